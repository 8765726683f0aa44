"""The DICOM front door holds against peers that are not, or no longer, trusted.

Each test replays an attack of issue #11 with real sockets, ``ssl`` and pynetdicom over
TLS, and checks that an enrolled modality (dcmtk's ``echoscu +tls``) still gets through.
Attackers use other loopback addresses (127.0.0.2 and up) than the modality (127.0.0.1).
"""

from __future__ import annotations

import resource
import selectors
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification
from sqlalchemy import update

from pacs.core import pki
from pacs.core.audit import as_dict
from pacs.core.context import CA_CERT, CA_KEY
from pacs.core.nodes import NodeRegistry, issue_node_certificate
from pacs.dicom.server import REFRESH_SECONDS
from pacs.dicom.throttle import FREE_FAILURES
from storage.models import Node
from tests.conftest import NodeFiles, RunningDicom, running_dicom

HANDSHAKE_SECONDS = 2
NETWORK_SECONDS = 3
A_ABORT = 0x07
SECURITY_ALERT = "110113"
ENDED = "association ended by an enrolment change"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[RunningDicom]:
    """A listener with two association slots, a 2 s handshake and a 3 s network timeout."""
    with running_dicom(
        tmp_path, max_associations=2, handshake_timeout=HANDSHAKE_SECONDS, network_timeout=NETWORK_SECONDS
    ) as running:
        yield running


def _context(node: NodeFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(node.ca)
    context.load_cert_chain(node.cert, node.key)
    return context


def _connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def _tls(port: int, source: str, node: NodeFiles) -> ssl.SSLSocket:
    return _context(node).wrap_socket(_connect(port, source))


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` (after anything it still sends) within `seconds`."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(4096) == b"":
                return True
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def _wait_for(predicate: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    return predicate()


def _alerts(dicom: RunningDicom, source: str) -> list[dict[str, Any]]:
    return [
        as_dict(r)["details"]
        for r in dicom.pacs.audit.records()
        if r.event_id == SECURITY_ALERT and r.source == source
    ]


def _echoes(dicom: RunningDicom, node: NodeFiles) -> bool:
    result = dicom.dcmtk("echoscu", node)
    return result.returncode == 0


def _associate(dicom: RunningDicom, node: NodeFiles, *contexts: Any) -> Association:
    scu = AE(ae_title=node.ae_title)
    for context in contexts or (Verification,):
        scu.add_requested_context(context)
    return scu.associate("127.0.0.1", dicom.port, ae_title="PACS", tls_args=(_context(node), None))


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- 1. slots are taken only after TLS and a well-formed association request ----------------------


def test_stalled_connections_from_many_addresses_take_no_association_slot(guarded: RunningDicom) -> None:
    ct1 = guarded.enrol("CT1")
    with ExitStack() as stack:
        stalled: list[socket.socket] = []
        for n in range(2, 9):  # TLS done, then half an A-ASSOCIATE-RQ, then nothing
            tls = stack.enter_context(_tls(guarded.port, f"127.0.0.{n}", ct1))
            tls.sendall(struct.pack(">BBL", 0x01, 0, 200) + b"\0" * 20)
            stalled.append(tls)
        for n in range(9, 16):  # a TCP connection that never says anything
            stalled.append(stack.enter_context(_connect(guarded.port, f"127.0.0.{n}")))
        assert _echoes(guarded, ct1), "14 stalled peers kept the enrolled modality out"
        assert all(_closed_within(s, HANDSHAKE_SECONDS + 3) for s in stalled)


def _closing_times(sockets: list[socket.socket], started: float, seconds: float) -> list[float]:
    """Seconds from `started` until the server closed each socket (inf if not within `seconds`)."""
    closed = [float("inf")] * len(sockets)
    with selectors.DefaultSelector() as selector:
        for n, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, n)
        while selector.get_map() and (left := started + seconds - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                closed[key.data] = time.monotonic() - started
                selector.unregister(key.fileobj)
    return closed


def test_one_address_may_hold_only_a_few_pending_connections(guarded: RunningDicom) -> None:
    ct1 = guarded.enrol("CT1")
    limit = guarded.pacs.settings.dicom.max_pending_per_address
    with ExitStack() as stack:
        started = time.monotonic()
        held = [stack.enter_context(_connect(guarded.port, "127.0.0.2")) for _ in range(limit + 4)]
        closed = _closing_times(held, started, HANDSHAKE_SECONDS + 3)
    early = [t for t in closed if t < HANDSHAKE_SECONDS * 0.75]
    late = [t for t in closed if HANDSHAKE_SECONDS * 0.75 <= t < float("inf")]
    assert (len(early), len(late)) == (4, limit), closed
    assert _echoes(guarded, ct1)


def test_a_peer_stalling_inside_a_pdu_is_cut_at_the_network_timeout_and_frees_its_slot(
    guarded: RunningDicom,
) -> None:
    ct1 = guarded.enrol("CT1")
    stuck = [_associate(guarded, ct1) for _ in range(2)]
    assert all(a.is_established for a in stuck)
    for assoc in stuck:  # a P-DATA-TF that announces 1,000 bytes and sends 10
        assoc.dul.socket.socket.sendall(struct.pack(">BBL", 0x04, 0, 1000) + b"\0" * 10)
    assert _wait_for(lambda: not any(a.is_established for a in stuck), NETWORK_SECONDS + 5)
    assert _wait_for(lambda: _echoes(guarded, ct1), 5), "the slots of the stalled associations were not freed"


# -- 2. PDU lengths are bounded before anything is allocated --------------------------------------


def _answer(sock: ssl.SSLSocket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    try:
        return sock.recv(10)
    except (TimeoutError, ConnectionResetError, ssl.SSLError):
        return b""


@pytest.mark.parametrize("pdu_type", [0x01, 0x04], ids=["A-ASSOCIATE-RQ", "P-DATA-TF"])
def test_a_pdu_declaring_4_gib_is_aborted_at_once_without_allocating(
    guarded: RunningDicom, pdu_type: int
) -> None:
    ct1 = guarded.enrol("CT1")
    before = _rss_peak_mib()
    with _tls(guarded.port, "127.0.0.2", ct1) as tls:
        tls.sendall(struct.pack(">BBL", pdu_type, 0, 0xFFFF_FFF0) + b"\0" * 65536)
        answer = _answer(tls, 5)
        assert answer[:1] == bytes([A_ABORT]), f"no A-ABORT, got {answer!r}"
        assert _closed_within(tls, 5)
    assert _rss_peak_mib() - before < 64
    alert = _wait_for(lambda: [a for a in _alerts(guarded, "127.0.0.2") if a["what"] == "PDU too long"], 5)
    assert alert and alert[0]["declared_length"] == 0xFFFF_FFF0


def test_a_p_data_longer_than_our_maximum_aborts_an_established_association(guarded: RunningDicom) -> None:
    ct1 = guarded.enrol("CT1")
    assoc = _associate(guarded, ct1)
    assert assoc.is_established
    too_long = guarded.pacs.settings.dicom.max_pdu + 1
    assoc.dul.socket.socket.sendall(struct.pack(">BBL", 0x04, 0, too_long))
    assert _wait_for(lambda: assoc.is_aborted, 5)
    assert _echoes(guarded, ct1)


# -- 3. removal and narrowed rights reach open associations and the handshake ----------------------


def _find_context_node(guarded: RunningDicom) -> tuple[NodeFiles, Association]:
    node = guarded.enrol("WS1", allow="store,find")
    assoc = _associate(guarded, node, StudyRootQueryRetrieveInformationModelFind, Verification)
    assert assoc.is_established
    return node, assoc


def test_removing_a_node_ends_its_open_association(guarded: RunningDicom) -> None:
    _, assoc = _find_context_node(guarded)
    NodeRegistry(guarded.pacs.database).remove("WS1")
    assert _wait_for(lambda: assoc.is_aborted, REFRESH_SECONDS * 3), "the removed node kept its association"
    ended = [
        a for a in _alerts(guarded, "127.0.0.1") if a["what"] == "association ended by an enrolment change"
    ]
    assert ended and "no longer enrolled" in ended[0]["reason"]


def test_narrowing_a_nodes_rights_ends_its_open_association(guarded: RunningDicom) -> None:
    _, assoc = _find_context_node(guarded)
    with guarded.pacs.database.write() as session:
        session.execute(update(Node).where(Node.ae_title == "WS1").values(permissions="store"))
    assert _wait_for(lambda: assoc.is_aborted, REFRESH_SECONDS * 3)
    ended = [
        a for a in _alerts(guarded, "127.0.0.1") if a["what"] == "association ended by an enrolment change"
    ]
    assert ended and "lost the right to find" in ended[0]["reason"]


def test_a_removed_nodes_certificate_is_refused_at_the_tls_handshake(guarded: RunningDicom) -> None:
    node, assoc = _find_context_node(guarded)
    assoc.release()
    NodeRegistry(guarded.pacs.database).remove("WS1")
    with _tls(guarded.port, "127.0.0.1", node) as tls:
        tls.sendall(struct.pack(">BBL", 0x01, 0, 4) + b"\0" * 4)
        assert _closed_within(tls, 3)
    refused = _wait_for(
        lambda: [a for a in _alerts(guarded, "127.0.0.1") if a.get("reason") == "CERTIFICATE_NOT_ENROLLED"], 5
    )
    assert refused and refused[0]["certificate_subject"].endswith("CN=WS1")


def test_a_certificate_our_ca_issued_to_no_enrolment_is_refused_at_the_tls_handshake(
    guarded: RunningDicom, tmp_path: Path
) -> None:
    settings = guarded.pacs.settings
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    issue_node_certificate(ca, "CT1", tmp_path / "stray")
    guarded.enrol("CT1")
    stray = NodeFiles("CT1", tmp_path / "stray")
    assoc = _associate(guarded, stray)
    assert not assoc.is_established
    assert [a for a in _alerts(guarded, "127.0.0.1") if a.get("reason") == "CERTIFICATE_NOT_ENROLLED"]


# -- 5. failed handshakes are throttled per address and audited in aggregate ----------------------


def test_a_connect_and_drop_flood_is_throttled_and_audited_in_a_few_records(guarded: RunningDicom) -> None:
    ct1 = guarded.enrol("CT1")
    attempts, deadline = 0, time.monotonic() + 10
    while attempts < 300 and time.monotonic() < deadline:
        with _connect(guarded.port, "127.0.0.3") as sock:
            sock.shutdown(socket.SHUT_WR)
            _closed_within(sock, 1)
        attempts += 1
    assert attempts == 300
    assert guarded.server.gate.blocked("127.0.0.3")
    assert _echoes(guarded, ct1), "the flood from another address kept the modality out"
    immediate = _alerts(guarded, "127.0.0.3")
    assert 1 <= len(immediate) <= 2, immediate
    guarded.server.gate.flush(now=float("inf"))
    alerts = _alerts(guarded, "127.0.0.3")
    summary = [a for a in alerts if a["what"] == "repeated connection failures"]
    assert len(alerts) <= 3 and len(summary) == 1, alerts
    failed = sum(summary[0]["failures"].values()) + len(immediate)
    assert failed > FREE_FAILURES and failed + summary[0]["refused_at_accept"] == attempts
