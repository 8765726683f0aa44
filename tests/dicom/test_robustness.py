"""The DICOM service fails closed: internal errors refuse, never accept or leak."""

from __future__ import annotations

import ssl
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from tests.conftest import NodeFiles, RunningDicom


def _context(node: NodeFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(node.ca)
    context.load_cert_chain(node.cert, node.key)
    return context


def test_an_error_in_the_association_policy_rejects_the_peer(
    dicom: RunningDicom, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = dicom.enrol("CT1")

    def broken() -> list:
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(dicom.server.handlers.registry, "all", broken)
    scu = AE(ae_title="CT1")
    scu.add_requested_context(Verification)
    assoc = scu.associate("127.0.0.1", dicom.port, ae_title="PACS", tls_args=(_context(node), None))
    assert assoc.is_rejected
    assert not assoc.is_established


def test_a_failing_index_write_answers_failure_without_details_and_leaves_no_plaintext(
    dicom: RunningDicom, ct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = dicom.enrol("CT1")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(dicom.pacs.archive, "index_blob", broken)
    scu = AE(ae_title="CT1")
    scu.add_requested_context(CTImageStorage)
    assoc = scu.associate("127.0.0.1", dicom.port, ae_title="PACS", tls_args=(_context(node), None))
    assert assoc.is_established
    status = assoc.send_c_store(pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0]))
    assoc.release()
    assert status.Status == 0x0110
    assert "database" not in str(status.get("ErrorComment", ""))
    data_dir = dicom.pacs.settings.data_dir
    assert not (data_dir / "incoming").exists()
    assert [p for p in data_dir.rglob("*") if p.is_file() and b"QUIXOTE" in p.read_bytes()] == []


@pytest.mark.parametrize("study_uid", ["", "*", "1.2.*"])
def test_a_retrieve_without_its_unique_key_sends_nothing(
    dicom: RunningDicom, ct_dir: Path, study_uid: str
) -> None:
    for path in sorted(ct_dir.glob("*.dcm")):
        dicom.pacs.archive.store(path)
    node = dicom.enrol("WS1", allow="get")
    scu = AE(ae_title="WS1")
    scu.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    scu.add_requested_context(CTImageStorage)
    received: list[str] = []

    def on_store(event: object) -> int:
        received.append(event.dataset.SOPInstanceUID)  # type: ignore[attr-defined]
        return 0x0000

    from pynetdicom import evt

    assoc = scu.associate(
        "127.0.0.1",
        dicom.port,
        ae_title="PACS",
        tls_args=(_context(node), None),
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    query = pydicom.Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    statuses = [
        status.Status for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
    ]
    assoc.release()
    assert received == []
    assert statuses[-1] == 0xA900


def test_no_query_result_leaves_without_its_audit_record(
    dicom: RunningDicom, ct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in sorted(ct_dir.glob("*.dcm")):
        dicom.pacs.archive.store(path)
    node = dicom.enrol("WS1", allow="find")

    def broken(event: object) -> None:
        raise RuntimeError("audit trail unavailable")

    monkeypatch.setattr(dicom.pacs.audit, "append", broken)
    scu = AE(ae_title="WS1")
    scu.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = scu.associate("127.0.0.1", dicom.port, ae_title="PACS", tls_args=(_context(node), None))
    assert assoc.is_established
    query = pydicom.Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = "*"
    responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    assoc.release()
    assert [identifier for _, identifier in responses if identifier is not None] == []
    assert responses[-1][0].Status == 0xA700
