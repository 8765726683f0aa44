"""Where C-MOVE and C-GET may send a study: only to enrolled destinations, at their enrolled address."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacs.core import pki
from pacs.core.context import SERVER_CERT
from pacs.dicom import policy
from tests.conftest import NodeFiles, RunningDicom, _free_port
from tests.dicom.access_helpers import (
    PATIENT_NAME,
    _associate,
    _no_patient_data,
    _node_context,
    _query_retrieve_association,
    _security_alert,
    _store_ct,
    _study_identifier,
    _transfers,
    _wait_for,
)

# -- C-MOVE destinations --------------------------------------------------------------------------


def _move(dicom: RunningDicom, node: NodeFiles, study_uid: str, destination: str) -> list[tuple[Any, Any]]:
    assoc = _associate(
        dicom, node.ae_title, _node_context(node), contexts=(StudyRootQueryRetrieveInformationModelMove,)
    )
    assert assoc.is_established
    try:
        return list(
            assoc.send_c_move(
                _study_identifier(study_uid), destination, StudyRootQueryRetrieveInformationModelMove
            )
        )
    finally:
        assoc.release()


class _Watcher:
    """A TCP listener that records whether anyone connects to it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.socket.settimeout(0.2)
        self.port = int(self.socket.getsockname()[1])
        self.connections: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client, address = self.socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(address)
            client.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture
def watcher() -> Iterator[_Watcher]:
    watching = _Watcher()
    yield watching
    watching.close()


def test_c_move_to_an_unenrolled_destination_is_refused(dicom: RunningDicom, ct_dir: Path) -> None:
    study_uid = _store_ct(dicom, ct_dir)
    ws = dicom.enrol("WS1", allow="find,move")
    responses = _move(dicom, ws, study_uid, "NOWHERE")
    statuses = [status.Status for status, _ in responses]
    assert statuses[-1] == policy.MOVE_DESTINATION_UNKNOWN
    assert policy.PENDING not in statuses
    assert all(_no_patient_data(identifier) for _, identifier in responses)
    record = _security_alert(dicom, "C-MOVE refused", destination="NOWHERE")
    assert record["user_id"] == "WS1"
    assert record["outcome"] != 0
    assert not _transfers(dicom)


def test_c_move_never_goes_to_an_address_the_request_names(
    dicom: RunningDicom, ct_dir: Path, watcher: _Watcher
) -> None:
    study_uid = _store_ct(dicom, ct_dir)
    ws = dicom.enrol("WS1", allow="move", port=watcher.port)  # the requestor itself is a destination
    named = f"127.0.0.1:{watcher.port}"
    responses = _move(dicom, ws, study_uid, named)
    assert responses[-1][0].Status == policy.MOVE_DESTINATION_UNKNOWN
    _security_alert(dicom, "C-MOVE refused", destination=named)
    time.sleep(0.5)
    assert watcher.connections == []
    assert not _transfers(dicom)


def test_c_move_to_a_destination_enrolled_as_a_network_is_refused(
    dicom: RunningDicom, ct_dir: Path, watcher: _Watcher
) -> None:
    study_uid = _store_ct(dicom, ct_dir)
    ws = dicom.enrol("WS1", allow="move")
    dicom.enrol("WARD", host="127.0.0.0/8", port=watcher.port)
    responses = _move(dicom, ws, study_uid, "WARD")
    assert responses[-1][0].Status == policy.MOVE_DESTINATION_UNKNOWN
    _security_alert(dicom, "C-MOVE refused", destination="WARD")
    time.sleep(0.5)
    assert watcher.connections == []


@dataclass
class _Sink:
    """An enrolled C-MOVE destination: a TLS storage SCP on the port it was enrolled with."""

    node: NodeFiles
    port: int
    peers: list[tuple[str, str, bytes]] = field(default_factory=list)  # (address, calling AE, DER cert)
    received: list[str] = field(default_factory=list)


@pytest.fixture
def sink(dicom: RunningDicom) -> Iterator[_Sink]:
    port = _free_port()
    node = dicom.enrol("VIEWER", port=port)
    sink = _Sink(node, port)

    def on_requested(event: evt.Event) -> None:
        connection = event.assoc.dul.socket.socket
        sink.peers.append(
            (
                event.assoc.requestor.address,
                str(event.assoc.requestor.primitive.calling_ae_title).strip(),
                connection.getpeercert(True),
            )
        )

    def on_store(event: evt.Event) -> int:
        sink.received.append(str(event.dataset.PatientName))
        return policy.SUCCESS

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(node.cert, node.key)
    context.load_verify_locations(cafile=node.ca)  # it only accepts the archive (our CA)
    context.verify_mode = ssl.CERT_REQUIRED
    ae = AE(ae_title="VIEWER")
    ae.supported_contexts = StoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        ssl_context=context,
        evt_handlers=[(evt.EVT_REQUESTED, on_requested), (evt.EVT_C_STORE, on_store)],
    )
    yield sink
    server.shutdown()


def test_c_move_connects_to_the_enrolled_address_and_port_of_the_destination_over_tls(
    dicom: RunningDicom, ct_dir: Path, sink: _Sink
) -> None:
    study_uid = _store_ct(dicom, ct_dir)
    ws = dicom.enrol("WS1", allow="move")
    _move(dicom, ws, study_uid, "VIEWER")
    assert len(sink.peers) == 1
    address, calling, certificate = sink.peers[0]
    assert (address, calling) == ("127.0.0.1", "PACS")
    server_certificate = pki.load_certificate(dicom.pacs.settings.tls_dir / SERVER_CERT)
    assert hashlib.sha256(certificate).hexdigest() == pki.fingerprint(server_certificate)
    transfer = _wait_for(lambda: _transfers(dicom))
    assert transfer[0]["details"] == {"what": "C-MOVE", "destination": "VIEWER", "instances": 6}
    assert transfer[0]["user_id"] == "WS1"


def test_c_move_delivers_the_study_to_the_enrolled_destination(
    dicom: RunningDicom, ct_dir: Path, sink: _Sink
) -> None:
    study_uid = _store_ct(dicom, ct_dir)
    ws = dicom.enrol("WS1", allow="move")
    responses = _move(dicom, ws, study_uid, "VIEWER")
    final = responses[-1][0]
    assert (final.Status, final.NumberOfFailedSuboperations) == (policy.SUCCESS, 0)
    assert sink.received == [PATIENT_NAME] * 6


def test_c_get_returns_the_study_to_a_node_granted_get(dicom: RunningDicom, ct_dir: Path) -> None:
    study_uid = _store_ct(dicom, ct_dir)
    ws = dicom.enrol("WS1", allow="get")
    received: list[Dataset] = []
    assoc = _query_retrieve_association(dicom, ws, received)
    try:
        responses = list(
            assoc.send_c_get(_study_identifier(study_uid), StudyRootQueryRetrieveInformationModelGet)
        )
    finally:
        assoc.release()
    assert responses[-1][0].Status == policy.SUCCESS
    assert [str(ds.PatientName) for ds in received] == [PATIENT_NAME] * 6
