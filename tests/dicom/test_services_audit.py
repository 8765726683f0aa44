"""The audit trail of the DICOM service: stores, and queries with their keys."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
)

from pacs.core.audit import EventID
from storage.models import AuditRecord
from tests.conftest import RunningDicom
from tests.dicom.helpers import SUCCESS, QueryData, _association, _audit, _poll_audit, _storage

# -- audit ------------------------------------------------------------------------------------------


def test_a_store_association_is_audited_once_per_study_with_counts(
    dicom: RunningDicom, query_files: QueryData
) -> None:
    node = dicom.enrol("MODALITY")
    files = list(query_files.files)  # 6 + 3 slices of one patient, 2 of another

    result = dicom.dcmtk("storescu", node, "-R", files=files)
    assert result.returncode == 0, result.stderr

    def by_modality(record: AuditRecord) -> bool:
        counted = "stored" in json.loads(record.details)
        return record.user_id == "MODALITY" and record.action == "C" and counted

    records = _poll_audit(dicom.pacs, EventID.INSTANCES_TRANSFERRED, by_modality, count=3)
    summary = {r.study_uid: (r.patient_id, r.source, r.outcome, json.loads(r.details)) for r in records}
    counts = {"duplicates": 0, "new_versions": 0}
    assert summary == {
        query_files.quixote_study: ("PID-Q-7731", "127.0.0.1", 0, {"stored": 6, **counts}),
        query_files.quixote_second_study: ("PID-Q-7731", "127.0.0.1", 0, {"stored": 3, **counts}),
        query_files.panza_study: ("PID-P-0002", "127.0.0.1", 0, {"stored": 2, **counts}),
    }
    assert len(records) == 3


def test_a_study_is_audited_durably_before_its_first_object_is_acknowledged(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    node = dicom.enrol("MODALITY")
    path = sorted(ct_dir.glob("*.dcm"))[0]
    sent = pydicom.dcmread(path)
    with _association(dicom, node, _storage()) as assoc:
        assert assoc.send_c_store(sent).Status == SUCCESS
        # The association is still open: only the announcement can be there yet.
        announced = _audit(
            dicom.pacs,
            EventID.INSTANCES_TRANSFERRED,
            lambda r: r.user_id == "MODALITY" and r.study_uid == sent.StudyInstanceUID,
        )
        assert [(r.patient_id, r.action) for r in announced] == [("PID-Q-7731", "C")]
        assert assoc.send_c_store(pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[1])).Status == SUCCESS
    records = _poll_audit(
        dicom.pacs,
        EventID.INSTANCES_TRANSFERRED,
        lambda r: r.user_id == "MODALITY" and r.study_uid == sent.StudyInstanceUID,
        count=2,
    )
    assert [json.loads(r.details).get("stored") for r in records] == [None, 2]


def test_each_c_find_is_audited_as_a_query_with_its_keys(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
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
    )
    assert result.returncode == 0, result.stderr
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = queryable.quixote_study
    query.Modality = "CT"
    with _association(dicom, node, [build_context(StudyRootQueryRetrieveInformationModelFind)]) as assoc:
        assert list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))[-1][0].Status == 0

    records = _poll_audit(dicom.pacs, EventID.QUERY, lambda r: r.user_id == "WORKSTATION", count=2)
    assert len(records) == 2
    study_query, series_query = (json.loads(r.details) for r in records)
    assert study_query["level"] == "STUDY"
    assert study_query["keys"]["PatientID"] == "PID-Q-7731"
    assert study_query["matches"] == 2
    assert records[0].patient_id == "PID-Q-7731"
    assert series_query["level"] == "SERIES"
    assert series_query["keys"]["StudyInstanceUID"] == queryable.quixote_study
    assert series_query["keys"]["Modality"] == "CT"
    assert series_query["matches"] == 1
    assert records[1].study_uid == queryable.quixote_study
