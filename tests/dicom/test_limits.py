"""Limits of the DICOM listener: stalled peers are dropped at the timeouts and starve nobody."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.conftest import NodeFiles, RunningDicom, running_dicom


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[RunningDicom]:
    """A listener with 2-second ACSE and handshake timeouts and a 3-second network timeout."""
    with running_dicom(tmp_path, acse_timeout=2, handshake_timeout=2, network_timeout=3) as running:
        yield running


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def test_peer_stalling_in_the_tls_handshake_is_dropped_and_starves_nobody(impatient: RunningDicom) -> None:
    node = impatient.enrol("CT1")
    stalled = socket.create_connection(("127.0.0.1", impatient.port))
    try:
        started = time.monotonic()
        echo = impatient.dcmtk("echoscu", node)
        assert echo.returncode == 0, echo.stdout + echo.stderr
        assert time.monotonic() - started < 2, "an enrolled node waited for the stalled peer"
        assert _closed_by_server(stalled, within=10)
    finally:
        stalled.close()
    alerts = [
        r for r in impatient.pacs.audit.records() if r.event_id == "110113" and "handshake" in r.details
    ]
    assert alerts, "the stalled handshake was not audited"


def _client_context(node: NodeFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(node.ca)
    context.load_cert_chain(node.cert, node.key)
    return context


def test_silent_association_is_aborted_at_the_network_timeout(impatient: RunningDicom) -> None:
    node = impatient.enrol("CT1")
    scu = AE(ae_title="CT1")
    scu.add_requested_context(Verification)
    assoc = scu.associate(
        "127.0.0.1", impatient.port, ae_title="PACS", tls_args=(_client_context(node), None)
    )
    assert assoc.is_established
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not assoc.is_established
    deadline = time.monotonic() + 5
    while impatient.server.ae.active_associations and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not impatient.server.ae.active_associations


def test_connection_that_never_requests_an_association_is_dropped(impatient: RunningDicom) -> None:
    node = impatient.enrol("CT1")
    raw = socket.create_connection(("127.0.0.1", impatient.port))
    tls = _client_context(node).wrap_socket(raw)
    try:
        assert _closed_by_server(tls, within=10)
    finally:
        tls.close()
