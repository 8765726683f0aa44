"""C-FIND from real peers over mutual TLS: dcmtk's ``findscu`` and pynetdicom at every level."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from tests.conftest import RunningDicom
from tests.dicom.helpers import PENDING, SUCCESS, QueryData, _association, _findscu_responses

# -- C-FIND -----------------------------------------------------------------------------------------


def test_findscu_study_root_study_level_returns_the_patients_studies(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    out = tmp_path / "responses"
    out.mkdir()

    result = dicom.dcmtk(
        "findscu",
        node,
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=PID-Q-7731",
        "-k",
        "StudyInstanceUID",
        "-k",
        "AccessionNumber",
        "-X",
        "-od",
        str(out),
    )

    responses = _findscu_responses(result, out)
    assert {str(r.StudyInstanceUID) for r in responses} == {
        queryable.quixote_study,
        queryable.quixote_second_study,
    }
    assert len(responses) == 2
    assert {str(r.AccessionNumber) for r in responses} == {"ACC0001", "ACC-Q-2"}
    assert {str(r.PatientID) for r in responses} == {"PID-Q-7731"}


def test_findscu_patient_root_patient_level_returns_the_matching_patient(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    out = tmp_path / "responses"
    out.mkdir()

    result = dicom.dcmtk(
        "findscu",
        node,
        "-P",
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientName=QUIXOTE*",
        "-k",
        "PatientID",
        "-X",
        "-od",
        str(out),
    )

    responses = _findscu_responses(result, out)
    assert [(str(r.PatientID), str(r.PatientName)) for r in responses] == [("PID-Q-7731", "QUIXOTE^DULCINEA")]


def test_findscu_is_refused_to_a_node_not_granted_find(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("MODALITY")  # store only
    out = tmp_path / "responses"
    out.mkdir()

    result = dicom.dcmtk(
        "findscu", node, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID", "-X", "-od", str(out)
    )

    # The listener accepts no query presentation context from it, so findscu has nothing to use.
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.stderr
    assert list(out.glob("rsp*.dcm")) == []


def test_pynetdicom_find_at_series_level(dicom: RunningDicom, queryable: QueryData) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = queryable.quixote_study
    query.SeriesInstanceUID = ""
    query.Modality = ""
    query.NumberOfSeriesRelatedInstances = ""

    with _association(dicom, node, [build_context(StudyRootQueryRetrieveInformationModelFind)]) as assoc:
        responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))

    statuses = [status.Status for status, _ in responses]
    assert statuses == [PENDING, SUCCESS]
    match = responses[0][1]
    assert match.SeriesInstanceUID == queryable.quixote_series
    assert match.Modality == "CT"
    assert int(match.NumberOfSeriesRelatedInstances) == 6


def test_pynetdicom_find_at_image_level(dicom: RunningDicom, queryable: QueryData) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = queryable.quixote_study
    query.SeriesInstanceUID = queryable.quixote_series
    query.SOPInstanceUID = ""

    with _association(dicom, node, [build_context(StudyRootQueryRetrieveInformationModelFind)]) as assoc:
        responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))

    assert [status.Status for status, _ in responses] == [PENDING] * 6 + [SUCCESS]
    assert {str(identifier.SOPInstanceUID) for _, identifier in responses[:-1]} == (
        queryable.quixote_instances
    )


def test_patient_level_find_through_the_patient_root_model_with_pynetdicom(
    dicom: RunningDicom, queryable: QueryData
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "PID-P-0002"
    query.PatientName = ""

    with _association(dicom, node, [build_context(PatientRootQueryRetrieveInformationModelFind)]) as assoc:
        responses = list(assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind))

    assert [status.Status for status, _ in responses] == [PENDING, SUCCESS]
    assert str(responses[0][1].PatientName) == "PANZA^SANCHO"
