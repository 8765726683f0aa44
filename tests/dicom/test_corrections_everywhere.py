"""A correction shows over every interface: C-FIND (dcmtk findscu +tls and pynetdicom), C-MOVE, C-GET,
QIDO-RS, WADO-RS metadata and the study list; ``export --original`` still gives the objects as sent.

Three studies of two patients (QUIXOTE^DULCINEA PID-Q-7731 with two studies, PANZA^SANCHO
PID-P-0002 with one) are stored in a running archive; a correction is made through
:mod:`pacs.ops.corrections` and the peers then ask for them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import build_context, evt
from pynetdicom.events import Event
from pynetdicom.presentation import build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from pacs.ops import corrections, exporting
from storage import changes
from tests.conftest import NodeFiles, RunningDicom
from tests.dicom.helpers import PENDING, SUCCESS, QueryData, _association, _findscu_responses, _storage
from tests.dicom.test_services_move_get import _move_destination, _move_study
from tests.web.web_helpers import Browser, make_web

ACTOR = corrections.Actor("admin@cli", "cli", "sent under the wrong name")


def _findscu_studies(dicom: RunningDicom, node: NodeFiles, out: Path, *keys: str) -> list[Dataset]:
    """Study-level responses of dcmtk's findscu over TLS to the study root query `keys`."""
    out.mkdir(parents=True, exist_ok=True)
    options = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientName"]
    for key in keys:
        options += ["-k", key]
    result = dicom.dcmtk("findscu", node, *options, "-X", "-od", str(out))
    return _findscu_responses(result, out)


def _patients(dicom: RunningDicom, node: NodeFiles, **keys: str) -> list[Dataset]:
    """Patient-level C-FIND (patient root, pynetdicom) answers."""
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = ""
    query.PatientID = ""
    query.NumberOfPatientRelatedStudies = ""
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    contexts = [build_context(PatientRootQueryRetrieveInformationModelFind)]
    with _association(dicom, node, contexts) as assoc:
        answers = list(assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind))
    assert answers[-1][0].Status == SUCCESS
    return [identifier for status, identifier in answers if status.Status == PENDING]


def _get_study(dicom: RunningDicom, node: NodeFiles, study_uid: str) -> list[Dataset]:
    received: list[Dataset] = []

    def on_store(event: Event) -> int:
        received.append(event.dataset)
        return SUCCESS

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    with _association(
        dicom,
        node,
        [build_context(StudyRootQueryRetrieveInformationModelGet), *_storage()],
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    ) as assoc:
        responses = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    assert responses[-1][0].Status == SUCCESS
    return received


def _physician(dicom: RunningDicom) -> Browser:
    web = make_web(dicom.pacs)
    return web.logged_in(web.user("doc"))


def _qido(doc: Browser, query: str) -> dict[str, str]:
    """Study UID -> Patient ID of the QIDO-RS answer to `query`."""
    response = doc.get(f"/dicomweb/studies?{query}&includefield=00100010")
    if response.status_code == 204:
        return {}
    assert response.status_code == 200, response.status_code
    return {item["0020000D"]["Value"][0]: item["00100020"]["Value"][0] for item in response.json}


def _metadata_names(doc: Browser, study_uid: str) -> set[str]:
    response = doc.get(f"/dicomweb/studies/{study_uid}/metadata")
    assert response.status_code == 200
    return {item["00100010"]["Value"][0]["Alphabetic"] for item in response.json}


def test_an_edited_patient_name_is_found_and_retrieved_with_it_everywhere(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find,move,get")
    doc = _physician(dicom)
    assert _metadata_names(doc, queryable.quixote_study) == {"QUIXOTE^DULCINEA"}  # cached before the edit
    corrections.edit(dicom.pacs, queryable.quixote_study, {"PatientName": "QUIJANO^ALONSO"}, ACTOR)

    found = _findscu_studies(dicom, node, tmp_path / "new", "PatientName=QUIJANO*")
    assert {str(r.StudyInstanceUID) for r in found} == {
        queryable.quixote_study,
        queryable.quixote_second_study,
    }
    assert {str(r.PatientName) for r in found} == {"QUIJANO^ALONSO"}
    assert _findscu_studies(dicom, node, tmp_path / "old", "PatientName=QUIXOTE*") == []
    (patient,) = _patients(dicom, node, PatientID="PID-Q-7731")
    assert (str(patient.PatientName), int(patient.NumberOfPatientRelatedStudies)) == ("QUIJANO^ALONSO", 2)

    sent = {pydicom.dcmread(path).SOPInstanceUID: pydicom.dcmread(path) for path in queryable.quixote_files}
    with _move_destination(dicom) as destination:
        moved = _move_study(dicom, node, queryable.quixote_study, "VIEWER")
    assert moved[-1][0].Status == SUCCESS
    got = _get_study(dicom, node, queryable.quixote_study)
    for received in [*destination.received, *got]:
        assert str(received.PatientName) == "QUIJANO^ALONSO"
        assert received.PixelData == sent[received.SOPInstanceUID].PixelData
    assert len(destination.received) == len(got) == 6

    assert _qido(doc, "PatientName=QUIJANO*") == {
        queryable.quixote_study: "PID-Q-7731",
        queryable.quixote_second_study: "PID-Q-7731",
    }
    assert _qido(doc, "PatientName=QUIXOTE*") == {}
    assert _metadata_names(doc, queryable.quixote_study) == {"QUIJANO^ALONSO"}
    listed = doc.get("/?name=quijano").text
    assert queryable.quixote_study in listed and "QUIJANO" in listed


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_moved_study_is_under_the_right_patient_everywhere_and_exported_as_received(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find,move,get")
    corrections.move(dicom.pacs, queryable.quixote_study, "PID-P-0002", None, ACTOR)

    panza = _findscu_studies(dicom, node, tmp_path / "p", "PatientID=PID-P-0002")
    assert {str(r.StudyInstanceUID) for r in panza} == {queryable.panza_study, queryable.quixote_study}
    assert {str(r.PatientName) for r in panza} == {"PANZA^SANCHO"}
    quixote = _findscu_studies(dicom, node, tmp_path / "q", "PatientID=PID-Q-7731")
    assert [str(r.StudyInstanceUID) for r in quixote] == [queryable.quixote_second_study]
    with _move_destination(dicom) as destination:
        _move_study(dicom, node, queryable.quixote_study, "VIEWER")
    assert {(str(ds.PatientID), str(ds.PatientName)) for ds in destination.received} == {
        ("PID-P-0002", "PANZA^SANCHO")
    }
    doc = _physician(dicom)
    assert _qido(doc, "PatientID=PID-P-0002") == {
        queryable.panza_study: "PID-P-0002",
        queryable.quixote_study: "PID-P-0002",
    }

    exporting.export_study(
        dicom.pacs, queryable.quixote_study, tmp_path / "original", user="t", original=True
    )
    exported = sorted(_digest(path) for path in (tmp_path / "original").rglob("*.dcm"))
    assert exported == sorted(_digest(path) for path in queryable.quixote_files)
    exporting.export_study(dicom.pacs, queryable.quixote_study, tmp_path / "current", user="t")
    current = [pydicom.dcmread(path) for path in (tmp_path / "current").rglob("*.dcm")]
    assert {str(ds.PatientID) for ds in current} == {"PID-P-0002"} and len(current) == 6


def test_a_merge_undone_puts_every_study_back_under_its_patient(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    doc = _physician(dicom)
    source = changes.one_patient(dicom.pacs.archive.database, "PID-Q-7731")
    into = changes.one_patient(dicom.pacs.archive.database, "PID-P-0002")
    merged = corrections.merge(dicom.pacs, source, into, ACTOR)
    assert len(merged.studies) == 2 and merged.instances == 9

    (patient,) = _patients(dicom, node)
    assert (str(patient.PatientID), int(patient.NumberOfPatientRelatedStudies)) == ("PID-P-0002", 3)
    assert set(_qido(doc, "PatientID=PID-P-0002")) == {
        queryable.panza_study,
        queryable.quixote_study,
        queryable.quixote_second_study,
    }

    corrections.undo(dicom.pacs, merged.id, corrections.Actor("admin@cli", "cli", "two people after all"))
    patients = {
        str(p.PatientID): (str(p.PatientName), int(p.NumberOfPatientRelatedStudies))
        for p in _patients(dicom, node)
    }
    assert patients == {"PID-Q-7731": ("QUIXOTE^DULCINEA", 2), "PID-P-0002": ("PANZA^SANCHO", 1)}
    back = _findscu_studies(dicom, node, tmp_path / "q", "PatientID=PID-Q-7731")
    assert {str(r.StudyInstanceUID) for r in back} == {
        queryable.quixote_study,
        queryable.quixote_second_study,
    }
    assert {str(r.PatientName) for r in back} == {"QUIXOTE^DULCINEA"}
    assert _qido(doc, "PatientID=PID-Q-7731") == {
        queryable.quixote_study: "PID-Q-7731",
        queryable.quixote_second_study: "PID-Q-7731",
    }
    listed = doc.get("/?name=quixote").text
    assert queryable.quixote_study in listed and queryable.quixote_second_study in listed
    versions = {info.version for info in dicom.pacs.archive.study_instances(queryable.quixote_study)}
    assert versions == {3}  # received, merged, undone: each a version of its own
