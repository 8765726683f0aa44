"""A study in the trash over DICOM: C-FIND at every level (pynetdicom and dcmtk), C-MOVE and C-GET find
nothing of it, an object sent again stays in the trash, and a restore brings everything back."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import build_context, evt
from pynetdicom.events import Event
from pynetdicom.presentation import build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from pacs.ops import study_trash
from tests.conftest import NodeFiles, RunningDicom
from tests.dicom.helpers import SUCCESS, QueryData, _association, _findscu_responses, _storage
from tests.dicom.test_services_move_get import _move_destination, _move_study
from tests.ops.trash_helpers import ADMIN

FIND_CONTEXTS = [
    build_context(PatientRootQueryRetrieveInformationModelFind),
    build_context(StudyRootQueryRetrieveInformationModelFind),
]


def _delete(dicom: RunningDicom, study_uid: str) -> None:
    study_trash.delete_study(dicom.pacs.archive, dicom.pacs.audit, study_uid, ADMIN, "sent by mistake")


def _query(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _find(dicom: RunningDicom, node: NodeFiles, query: Dataset, model: object) -> list[Dataset]:
    with _association(dicom, node, FIND_CONTEXTS) as assoc:
        responses = list(assoc.send_c_find(query, model))
    assert responses[-1][0].Status == SUCCESS
    return [identifier for _, identifier in responses[:-1]]


def _every_level(dicom: RunningDicom, node: NodeFiles, data: QueryData) -> dict[str, set[str]]:
    """What C-FIND answers at each level about the quixote patient and their first study."""
    patients = _find(
        dicom,
        node,
        _query("PATIENT", PatientID="PID-Q-7731", NumberOfPatientRelatedStudies=""),
        PatientRootQueryRetrieveInformationModelFind,
    )
    studies = _find(
        dicom,
        node,
        _query("STUDY", PatientID="PID-Q-7731", StudyInstanceUID=""),
        StudyRootQueryRetrieveInformationModelFind,
    )
    series = _find(
        dicom,
        node,
        _query("SERIES", StudyInstanceUID=data.quixote_study, SeriesInstanceUID=""),
        StudyRootQueryRetrieveInformationModelFind,
    )
    images = _find(
        dicom,
        node,
        _query(
            "IMAGE",
            StudyInstanceUID=data.quixote_study,
            SeriesInstanceUID=data.quixote_series,
            SOPInstanceUID="",
        ),
        StudyRootQueryRetrieveInformationModelFind,
    )
    return {
        "patient": {f"{r.PatientID}:{r.NumberOfPatientRelatedStudies}" for r in patients},
        "study": {str(r.StudyInstanceUID) for r in studies},
        "series": {str(r.SeriesInstanceUID) for r in series},
        "image": {str(r.SOPInstanceUID) for r in images},
    }


def test_deleted_study_is_not_found_by_cfind_at_any_level_and_restore_brings_it_back(
    dicom: RunningDicom, queryable: QueryData
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    before = _every_level(dicom, node, queryable)
    assert before == {
        "patient": {"PID-Q-7731:2"},
        "study": {queryable.quixote_study, queryable.quixote_second_study},
        "series": {queryable.quixote_series},
        "image": set(queryable.quixote_instances),
    }
    _delete(dicom, queryable.quixote_study)
    assert _every_level(dicom, node, queryable) == {
        "patient": {"PID-Q-7731:1"},
        "study": {queryable.quixote_second_study},
        "series": set(),
        "image": set(),
    }
    _delete(dicom, queryable.quixote_second_study)
    assert _every_level(dicom, node, queryable)["patient"] == set()
    study_trash.restore_study(dicom.pacs.archive, dicom.pacs.audit, queryable.quixote_study, ADMIN)
    study_trash.restore_study(dicom.pacs.archive, dicom.pacs.audit, queryable.quixote_second_study, ADMIN)
    assert _every_level(dicom, node, queryable) == before


def test_deleted_study_is_not_found_by_findscu_over_tls(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    _delete(dicom, queryable.quixote_study)
    answers = {}
    for level, keys in (
        ("STUDY", ["PatientID=PID-Q-7731", "StudyInstanceUID"]),
        ("SERIES", [f"StudyInstanceUID={queryable.quixote_study}", "SeriesInstanceUID"]),
        (
            "IMAGE",
            [
                f"StudyInstanceUID={queryable.quixote_study}",
                f"SeriesInstanceUID={queryable.quixote_series}",
                "SOPInstanceUID",
            ],
        ),
    ):
        out = tmp_path / level
        out.mkdir()
        options = ["-S", "-k", f"QueryRetrieveLevel={level}"]
        for key in keys:
            options += ["-k", key]
        result = dicom.dcmtk("findscu", node, *options, "-X", "-od", str(out))
        answers[level] = [str(r.get("StudyInstanceUID", "")) for r in _findscu_responses(result, out)]
    assert answers == {"STUDY": [queryable.quixote_second_study], "SERIES": [], "IMAGE": []}


def test_deleted_study_cannot_be_moved_or_fetched(dicom: RunningDicom, queryable: QueryData) -> None:
    requester = dicom.enrol("WORKSTATION", allow="store,find,move,get")
    _delete(dicom, queryable.quixote_study)
    with _move_destination(dicom) as destination:
        *_, (final, _) = _move_study(dicom, requester, queryable.quixote_study, "VIEWER")
    assert destination.received == []
    assert (final.Status, final.get("NumberOfCompletedSuboperations", 0)) == (SUCCESS, 0)

    received: list[Dataset] = []

    def on_store(event: Event) -> int:
        received.append(event.dataset)
        return SUCCESS

    with _association(
        dicom,
        requester,
        [build_context(StudyRootQueryRetrieveInformationModelGet), *_storage()],
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    ) as assoc:
        query = _query("STUDY", StudyInstanceUID=queryable.quixote_study)
        *_, (final, _) = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    assert received == []
    assert (final.Status, final.get("NumberOfCompletedSuboperations", 0)) == (SUCCESS, 0)


def test_a_trashed_study_sent_again_is_stored_and_stays_in_the_trash(
    dicom: RunningDicom, queryable: QueryData
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    _delete(dicom, queryable.quixote_study)
    result = dicom.dcmtk("storescu", node, files=list(queryable.quixote_files))
    assert result.returncode == 0, result.stderr
    assert _every_level(dicom, node, queryable)["study"] == {queryable.quixote_second_study}
    [ref] = study_trash.trashed(dicom.pacs.archive)
    assert (ref.study_uid, ref.instances) == (queryable.quixote_study, 6)
