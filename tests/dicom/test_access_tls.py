"""Who may talk DICOM to the archive, decided at the TLS handshake and at association.

Real peers (dcmtk and pynetdicom) against the running listener. Every refused peer must leave a
Security Alert (110113) naming it in the audit trail.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from pacs.dicom import policy
from tests.conftest import NodeFiles, RunningDicom
from tests.dicom.access_helpers import (
    _alerts_saying,
    _associate,
    _association_rejected,
    _handshake_refused,
    _node_context,
    _other_ca_node,
    _plain_dcmtk,
    _security_alert,
    _tls_context,
)

# -- the accepted case ----------------------------------------------------------------------------


def test_enrolled_node_can_echo_and_the_association_is_audited_as_accepted(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1")
    result = dicom.dcmtk("echoscu", ct, "-v")
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stderr + result.stdout
    record = _security_alert(
        dicom,
        "association accepted",
        calling_ae_title="CT1",
        called_ae_title="PACS",
        certificate_subject="CN=CT1",
        transport="tls",
    )
    assert record["outcome"] == 0
    assert record["user_id"] == "CT1"


# -- refused at the TLS handshake -----------------------------------------------------------------


def test_client_without_certificate_is_refused(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1")
    assoc = _associate(dicom, "CT1", _tls_context(ct.ca))
    assert not assoc.is_established
    _handshake_refused(dicom)
    assert not _alerts_saying(dicom, "association accepted")


def test_certificate_from_another_ca_is_refused(dicom: RunningDicom, tmp_path: Path) -> None:
    ct = dicom.enrol("CT1")
    cert, key = _other_ca_node(tmp_path, "CT1")
    assoc = _associate(dicom, "CT1", _tls_context(ct.ca, cert, key))
    assert not assoc.is_established
    _handshake_refused(dicom)
    assert not _alerts_saying(dicom, "association accepted")


def test_plaintext_dicom_to_the_tls_port_is_refused(dicom: RunningDicom) -> None:
    dicom.enrol("CT1")
    assoc = _associate(dicom, "CT1", None)
    assert not assoc.is_established
    _handshake_refused(dicom)
    assert not _alerts_saying(dicom, "association accepted")


def test_plaintext_echoscu_to_the_tls_port_is_refused(dicom: RunningDicom) -> None:
    dicom.enrol("CT1")
    result = _plain_dcmtk(dicom, "echoscu", "CT1", dicom.port)
    assert result.returncode != 0
    _handshake_refused(dicom)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLS1.0", "TLS1.1"])
def test_tls_older_than_1_2_is_refused(dicom: RunningDicom, version: ssl.TLSVersion) -> None:
    ct = dicom.enrol("CT1")
    context = _node_context(ct)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer what the server must refuse
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", dicom.port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, OSError)),
        context.wrap_socket(raw) as connection,
    ):
        connection.recv(1)
    record = _handshake_refused(dicom)
    assert "UNSUPPORTED_PROTOCOL" in record["details"]["reason"].upper()


def test_tls_1_2_is_accepted(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1")
    assoc = _associate(dicom, "CT1", _node_context(ct, maximum_version=ssl.TLSVersion.TLSv1_2))
    assert assoc.is_established
    try:
        assert assoc.dul.socket.socket.version() == "TLSv1.2"
        assert assoc.send_c_echo().Status == policy.SUCCESS
    finally:
        assoc.release()


# -- refused at association -----------------------------------------------------------------------


def test_the_right_certificate_with_another_calling_ae_title_is_refused(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1")
    dicom.enrol("CT2")
    result = dicom.dcmtk("echoscu", NodeFiles("CT2", ct.directory), "-v")
    assert result.returncode != 0
    assert "Association Rejected" in result.stderr + result.stdout
    _association_rejected(dicom, calling_ae_title="CT2", called_ae_title="PACS", certificate_subject="CN=CT1")


def test_the_right_ae_title_and_certificate_from_another_address_are_refused(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1", host="127.0.0.1")
    assoc = _associate(dicom, "CT1", _node_context(ct), bind="127.0.0.2")
    assert assoc.is_rejected
    assert assoc.acceptor.primitive.result == policy.REJECTED_PERMANENT
    assert assoc.acceptor.primitive.diagnostic == policy.REASON_NO_REASON
    _association_rejected(
        dicom,
        source="127.0.0.2",
        calling_ae_title="CT1",
        called_ae_title="PACS",
        certificate_subject="CN=CT1",
    )


def test_an_unknown_calling_ae_title_is_rejected_as_not_recognised(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1")
    assoc = _associate(dicom, "NOBODY", _node_context(ct))
    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == policy.REASON_CALLING_AE_NOT_RECOGNISED
    _association_rejected(dicom, calling_ae_title="NOBODY", certificate_subject="CN=CT1")


def test_a_wrong_called_ae_title_is_rejected_as_not_recognised(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1")
    result = dicom.dcmtk("echoscu", ct, "-v", called="OTHER")
    assert result.returncode != 0
    output = (result.stderr + result.stdout).lower()
    assert "association rejected" in output
    assert "called ae title not recogni" in output  # dcmtk spells it "Recognized"
    _association_rejected(
        dicom, calling_ae_title="CT1", called_ae_title="OTHER", certificate_subject="CN=CT1"
    )
