"""Least privilege: a node enrolled to store only may not query or retrieve, and each refusal is audited."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacs.dicom import policy
from tests.conftest import RunningDicom, _free_port
from tests.dicom.access_helpers import (
    PATIENT_ID,
    PATIENT_NAME,
    _alerts,
    _no_patient_data,
    _query_retrieve_association,
    _store_ct,
    _study_identifier,
    _transfers,
    _wait_for,
)

# -- least privilege: a store-only node may not query or retrieve ---------------------------------


def _responses_to_refused_request(assoc: Association, abstract_syntax: Any, send: Callable[[], Any]) -> list:
    """The responses to a request for a service the node was not granted.

    The archive may refuse the presentation context at negotiation (then nothing is sent and
    there are no responses) or answer the request with a failure; either way this returns
    what came back, for the caller to check that no identifier is among it.
    """
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    if str(abstract_syntax) not in accepted:
        return []
    responses = list(send())
    assert responses, "no response at all"
    for status, identifier in responses:
        assert status is not None and status.Status not in (policy.SUCCESS, policy.PENDING)
        assert _no_patient_data(identifier)
    return responses


def test_a_store_only_node_cannot_query_with_findscu(dicom: RunningDicom, ct_dir: Path) -> None:
    _store_ct(dicom, ct_dir)
    ct = dicom.enrol("CT1", allow="store")
    result = dicom.dcmtk(
        "findscu", ct, "-v", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=*", "-k", "PatientID"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert PATIENT_NAME not in output
    assert PATIENT_ID not in output
    assert not [r for r in dicom.pacs.audit.records() if r.event_id == "110112"]  # no query was run


def test_a_store_only_node_cannot_query_with_pynetdicom(dicom: RunningDicom, ct_dir: Path) -> None:
    _store_ct(dicom, ct_dir)
    ct = dicom.enrol("CT1", allow="store")
    received: list[Dataset] = []
    assoc = _query_retrieve_association(dicom, ct, received)
    try:
        for model in (
            StudyRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelFind,
        ):
            _responses_to_refused_request(
                assoc, model, lambda m=model: assoc.send_c_find(_study_identifier(), m)
            )
    finally:
        assoc.release()
    assert not [r for r in dicom.pacs.audit.records() if r.event_id == "110112"]


def test_a_store_only_node_cannot_move(dicom: RunningDicom, ct_dir: Path) -> None:
    study_uid = _store_ct(dicom, ct_dir)
    ct = dicom.enrol("CT1", allow="store", port=_free_port())  # even as a valid destination of its own
    received: list[Dataset] = []
    assoc = _query_retrieve_association(dicom, ct, received)
    try:
        _responses_to_refused_request(
            assoc,
            StudyRootQueryRetrieveInformationModelMove,
            lambda: assoc.send_c_move(
                _study_identifier(study_uid), "CT1", StudyRootQueryRetrieveInformationModelMove
            ),
        )
    finally:
        assoc.release()
    assert received == []
    assert not _transfers(dicom)


def test_a_store_only_node_cannot_get(dicom: RunningDicom, ct_dir: Path) -> None:
    study_uid = _store_ct(dicom, ct_dir)
    ct = dicom.enrol("CT1", allow="store")
    received: list[Dataset] = []
    assoc = _query_retrieve_association(dicom, ct, received)
    try:
        _responses_to_refused_request(
            assoc,
            StudyRootQueryRetrieveInformationModelGet,
            lambda: assoc.send_c_get(_study_identifier(study_uid), StudyRootQueryRetrieveInformationModelGet),
        )
    finally:
        assoc.release()
    assert received == []
    assert not _transfers(dicom)


def test_a_refused_query_leaves_a_security_alert(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1", allow="store")
    result = dicom.dcmtk("findscu", ct, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=*")
    assert result.returncode != 0
    record = _wait_for(
        lambda: [
            r
            for r in _alerts(dicom)
            if r["outcome"] != 0 and r["source"] == "127.0.0.1" and "FIND" in json.dumps(r["details"]).upper()
        ],
        timeout=2,
    )
    assert record, "no Security Alert records the refused C-FIND"
