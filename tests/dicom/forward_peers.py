"""Forwarding destinations for tests: a pynetdicom Storage (and Commitment) SCP, dcmtk's storescp.

Each is enrolled in the archive as a node with a port, its certificate issued by the project's
CA (with server authentication), and it trusts only that CA, so the archive's own server
certificate is what authenticates the forwarder.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import StorageCommitmentPushModel

from pacs.core.context import CA_CERT
from tests.conftest import NodeFiles, RunningDicom, _free_port

COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


@dataclass
class Peer:
    """A pynetdicom destination: what it received, and the commitment requests it was sent."""

    node: NodeFiles
    port: int
    received: list[str] = field(default_factory=list)  # SOP Instance UIDs, in arrival order
    commit_requests: list[list[str]] = field(default_factory=list)
    calling: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)  # refused (0xA700) once each
    datasets: dict[str, Dataset] = field(default_factory=dict)  # by SOP Instance UID, with file meta


def _server_context(dicom: RunningDicom, node: NodeFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(node.cert, node.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=dicom.pacs.settings.tls_dir / CA_CERT)
    return context


def enrol_destination(dicom: RunningDicom, ae_title: str) -> tuple[NodeFiles, int]:
    """Enrol `ae_title` as a destination on a free port of 127.0.0.1."""
    port = _free_port()
    return dicom.enrol(ae_title, allow="store", port=port), port


def _report(event: Event, action: Dataset, failed: bool) -> None:
    """Send the N-EVENT-REPORT answering a commitment request, on the requester's association."""
    report = Dataset()
    report.TransactionUID = action.TransactionUID
    report.ReferencedSOPSequence = action.ReferencedSOPSequence
    if failed:
        report.FailedSOPSequence = report.ReferencedSOPSequence[:1]
    event.assoc.send_n_event_report(
        report, 2 if failed else 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE
    )


def _peer_ae(
    peer: Peer, *, commitment: str | None, syntaxes: list[str]
) -> tuple[AE, list[tuple[object, object]]]:
    """The AE and handlers of a peer; `commitment`: None (not offered), "confirm", "fail" or "silent"."""
    ae = AE(ae_title=peer.node.ae_title)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, syntaxes)
    lock = threading.Lock()
    actions: dict[int, Dataset] = {}

    def on_store(event: Event) -> int:
        with lock:
            if str(event.dataset.SOPInstanceUID) in peer.refuse:
                peer.refuse.discard(str(event.dataset.SOPInstanceUID))
                return 0xA700
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            peer.received.append(str(dataset.SOPInstanceUID))
            peer.datasets[str(dataset.SOPInstanceUID)] = dataset
            peer.calling.add(str(event.assoc.requestor.ae_title).strip())
        return 0x0000

    def on_action(event: Event) -> tuple[int, Dataset | None]:
        action = event.action_information
        peer.commit_requests.append([str(i.ReferencedSOPInstanceUID) for i in action.ReferencedSOPSequence])
        actions[id(event.assoc)] = action
        return 0x0000, None

    def on_sent(event: Event) -> None:
        # The report goes once the N-ACTION response is on its way, from a thread of its own.
        action = actions.pop(id(event.assoc), None)
        if type(event.message).__name__ == "N_ACTION_RSP" and action is not None and commitment != "silent":
            args = (event, action, commitment == "fail")
            threading.Thread(target=_report, args=args, daemon=True).start()

    handlers: list[tuple[object, object]] = [(evt.EVT_C_STORE, on_store)]
    if commitment is not None:
        ae.add_supported_context(StorageCommitmentPushModel)
        handlers += [(evt.EVT_N_ACTION, on_action), (evt.EVT_DIMSE_SENT, on_sent)]
    return ae, handlers


@contextmanager
def pynetdicom_peer(
    dicom: RunningDicom,
    node: NodeFiles,
    port: int,
    *,
    commitment: str | None = None,
    peer: Peer | None = None,
    syntaxes: list[str] = ALL_TRANSFER_SYNTAXES,
) -> Iterator[Peer]:
    """A pynetdicom Storage SCP (and Storage Commitment SCP unless `commitment` is None) on `port`.

    Pass the `peer` of an earlier run to keep counting what it received; `syntaxes` are the
    transfer syntaxes it accepts.
    """
    peer = peer or Peer(node, port)
    ae, handlers = _peer_ae(peer, commitment=commitment, syntaxes=syntaxes)
    server = ae.start_server(
        ("127.0.0.1", port), block=False, ssl_context=_server_context(dicom, node), evt_handlers=handlers
    )
    try:
        yield peer
    finally:
        server.shutdown()
        ae.shutdown()


@contextmanager
def storescp(node: NodeFiles, port: int, outdir: Path) -> Iterator[Path]:
    """dcmtk's storescp over TLS on `port`, writing what it receives to `outdir`."""
    outdir.mkdir(parents=True, exist_ok=True)
    command = [
        "/usr/bin/storescp",
        *node.tls_args(),
        "-aet",
        node.ae_title,
        "-od",
        str(outdir),
        "+B",  # bit-preserving: write each object exactly as it arrived
        str(port),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TCP_NODELAY": "1"}
    )
    try:
        _wait_listening(port, process)
        yield outdir
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait until `process` listens on `port` (asked of ``ss``: a probing connection would fail TLS)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "storescp exited"
        listing = subprocess.run(
            ["/usr/bin/ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        )
        if listing.stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError("storescp did not listen")
