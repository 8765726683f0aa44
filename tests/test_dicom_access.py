"""Who may talk DICOM to the archive: real peers (dcmtk and pynetdicom) against the running listener.

Every refused peer must leave a Security Alert (110113) naming it in the audit trail.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from pacs.cli import main
from pacs.core import pki
from pacs.core.audit import as_dict
from pacs.core.context import CA_CERT, SERVER_CERT
from pacs.core.nodes import NodeRegistry
from pacs.dicom import policy
from tests.conftest import NodeFiles, RunningDicom

SECURITY_ALERT = "110113"
PATIENT_NAME = "QUIXOTE^DULCINEA"
PATIENT_ID = "PID-Q-7731"
REFRESH_WAIT = 4.0  # the server re-reads enrolment every 2 s


# -- helpers --------------------------------------------------------------------------------------


def _wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def _alerts(dicom: RunningDicom) -> list[dict[str, Any]]:
    return [as_dict(r) for r in dicom.pacs.audit.records() if r.event_id == SECURITY_ALERT]


def _security_alert(
    dicom: RunningDicom, what: str, *, source: str = "127.0.0.1", timeout: float = 5.0, **details: str
) -> dict[str, Any]:
    """The Security Alert saying `what` about the peer at `source` (with `details`), polled for."""

    def find() -> dict[str, Any] | None:
        for record in _alerts(dicom):
            if (
                record["details"].get("what") == what
                and record["source"] == source
                and all(record["details"].get(k) == v for k, v in details.items())
            ):
                return record
        return None

    record = _wait_for(find, timeout)
    assert record is not None, (
        f"no Security Alert {what!r} from {source} with {details}; alerts: "
        + json.dumps([r["details"] | {"source": r["source"]} for r in _alerts(dicom)])
    )
    return record


def _alerts_saying(dicom: RunningDicom, what: str) -> list[dict[str, Any]]:
    return [r for r in _alerts(dicom) if r["details"].get("what") == what]


def _handshake_refused(dicom: RunningDicom, source: str = "127.0.0.1") -> dict[str, Any]:
    record = _security_alert(dicom, "TLS handshake refused", source=source)
    assert record["outcome"] != 0
    return record


def _association_rejected(
    dicom: RunningDicom, *, source: str = "127.0.0.1", **details: str
) -> dict[str, Any]:
    record = _security_alert(dicom, "association rejected", source=source, **details)
    assert record["outcome"] != 0
    return record


def _tls_context(
    ca: Path, cert: Path | None = None, key: Path | None = None, **versions: ssl.TLSVersion
) -> ssl.SSLContext:
    """A client context that verifies the archive against `ca` and presents `cert` if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the archive is addressed by IP; its certificate is still verified
    context.load_verify_locations(cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    for attribute, version in versions.items():
        setattr(context, attribute, version)
    return context


def _node_context(node: NodeFiles, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    return _tls_context(node.ca, node.cert, node.key, **versions)


def _associate(
    dicom: RunningDicom,
    ae_title: str,
    context: ssl.SSLContext | None,
    *,
    contexts: tuple[Any, ...] = (Verification,),
    bind: str = "127.0.0.1",
    port: int | None = None,
    **kwargs: Any,
) -> Association:
    """A pynetdicom association as `ae_title` (TLS with `context`, or plaintext if None)."""
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for abstract_syntax in contexts:
        ae.add_requested_context(abstract_syntax)
    return ae.associate(
        "127.0.0.1",
        port or dicom.port,
        ae_title=dicom.ae_title,
        bind_address=(bind, 0),
        tls_args=(context, None) if context is not None else None,
        **kwargs,
    )


def _echo(dicom: RunningDicom, ae_title: str, context: ssl.SSLContext | None, **kwargs: Any) -> bool:
    """Whether a C-ECHO as `ae_title` gets an association and a Success answer."""
    assoc = _associate(dicom, ae_title, context, **kwargs)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == policy.SUCCESS
    finally:
        assoc.release()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _store_ct(dicom: RunningDicom, ct_dir: Path) -> str:
    """Put the CT series straight into the archive; return its Study Instance UID."""
    results = [dicom.pacs.archive.store(path) for path in sorted(ct_dir.glob("*.dcm"))]
    return results[0].study_uid


def _plain_dcmtk(dicom: RunningDicom, tool: str, ae_title: str, port: int, *options: str) -> Any:
    """dcmtk's `tool` without TLS as `ae_title` to `port` of the archive."""
    command = [f"/usr/bin/{tool}", "-aet", ae_title, "-aec", dicom.ae_title, *options, "127.0.0.1", str(port)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def _cli(*argv: str, environ: dict[str, str] | None = None) -> int:
    return main(list(argv), environ=environ or {})


def _other_ca_node(tmp_path: Path, ae_title: str) -> tuple[Path, Path]:
    """A client certificate (and key) for `ae_title` issued by a CA that is not the archive's."""
    ca = pki.create_ca("Some Other CA")
    issued = pki.issue_client_cert(ca, ae_title)
    directory = tmp_path / f"other-{ae_title}"
    directory.mkdir()
    pki.write_private_key(directory / "client.key", issued.key)
    pki.write_certificate(directory / "client.crt", issued.cert)
    return directory / "client.crt", directory / "client.key"


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


# -- least privilege: a store-only node may not query or retrieve ---------------------------------


def _no_patient_data(identifier: Dataset | None) -> bool:
    """Whether a response identifier is absent or names no patient or study."""
    if identifier is None:
        return True
    keywords = {element.keyword for element in identifier}
    return not keywords & {"PatientName", "PatientID", "StudyInstanceUID", "SOPInstanceUID"}


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


def _query_retrieve_association(dicom: RunningDicom, node: NodeFiles, received: list[Dataset]) -> Association:
    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return policy.SUCCESS

    ae = AE(ae_title=node.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for abstract_syntax in (
        Verification,
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
        CTImageStorage,
    ):
        ae.add_requested_context(abstract_syntax)
    assoc = ae.associate(
        "127.0.0.1",
        dicom.port,
        ae_title=dicom.ae_title,
        tls_args=(_node_context(node), None),
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    return assoc


def _study_identifier(study_uid: str = "") -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    identifier.PatientName = ""
    identifier.PatientID = ""
    return identifier


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


# -- C-MOVE destinations --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _transfers(dicom: RunningDicom) -> list[dict[str, Any]]:
    return [as_dict(r) for r in dicom.pacs.audit.records() if r.event_id == "110104" and r.action == "R"]


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


# -- enrolment reaches the running server ---------------------------------------------------------


def test_a_node_enrolled_with_the_cli_while_the_server_runs_can_echo(
    dicom: RunningDicom, tmp_path: Path
) -> None:
    data = str(dicom.pacs.settings.data_dir)
    out = tmp_path / "us1"
    assert (
        _cli("modality", "add", "US1", "--host", "127.0.0.1", "--issue-cert", str(out), "--data", data) == 0
    )
    result = dicom.dcmtk("echoscu", NodeFiles("US1", out))
    assert result.returncode == 0, result.stderr


def test_a_node_removed_with_the_cli_while_the_server_runs_is_refused(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1")
    assert dicom.dcmtk("echoscu", ct).returncode == 0
    assert _cli("modality", "remove", "CT1", "--data", str(dicom.pacs.settings.data_dir)) == 0
    result = dicom.dcmtk("echoscu", ct)
    assert result.returncode != 0
    record = _handshake_refused(dicom)
    assert record["details"]["reason"] == "CERTIFICATE_NOT_ENROLLED"
    assert record["details"]["certificate_subject"].endswith("CN=CT1")


def test_a_pinned_certificate_is_trusted_within_seconds_of_enrolment(
    dicom: RunningDicom, tmp_path: Path
) -> None:
    cert, key = _other_ca_node(tmp_path, "US1")
    context = _tls_context(dicom.pacs.settings.tls_dir / CA_CERT, cert, key)
    assert not _echo(dicom, "US1", context)  # not yet: its CA is not ours
    data = str(dicom.pacs.settings.data_dir)
    assert _cli("modality", "add", "US1", "--host", "127.0.0.1", "--cert", str(cert), "--data", data) == 0
    assert _wait_for(lambda: _echo(dicom, "US1", context), timeout=REFRESH_WAIT, interval=0.5)


def test_a_removed_pinned_node_is_refused_at_the_handshake_although_tls_still_trusts_its_certificate(
    dicom: RunningDicom, tmp_path: Path
) -> None:
    cert, key = _other_ca_node(tmp_path, "US1")
    context = _tls_context(dicom.pacs.settings.tls_dir / CA_CERT, cert, key)
    data = str(dicom.pacs.settings.data_dir)
    assert _cli("modality", "add", "US1", "--host", "127.0.0.1", "--cert", str(cert), "--data", data) == 0
    assert _wait_for(lambda: _echo(dicom, "US1", context), timeout=REFRESH_WAIT, interval=0.5)
    assert _cli("modality", "remove", "US1", "--data", data) == 0
    assert _wait_for(lambda: not _echo(dicom, "US1", context), timeout=REFRESH_WAIT, interval=0.25)
    _security_alert(
        dicom, "TLS handshake refused", reason="CERTIFICATE_NOT_ENROLLED", certificate_subject="CN=US1"
    )


# -- the legacy plaintext port --------------------------------------------------------------------


def _plaintext_port(dicom: RunningDicom) -> int:
    return dicom.pacs.settings.dicom.plaintext_port


def _plaintext_listening(dicom: RunningDicom) -> bool:
    """Wait (up to a refresh and a bit) for the plaintext listener to open.

    Not probed with a bare TCP connection: one that sends nothing holds an association
    thread on the server until the ACSE timeout.
    """
    return bool(_wait_for(lambda: dicom.server.plaintext_open, timeout=REFRESH_WAIT))


def test_the_plaintext_port_is_closed_while_no_plaintext_node_is_enrolled(dicom: RunningDicom) -> None:
    dicom.enrol("CT1")
    time.sleep(2.5)  # past a refresh of the enrolment
    assert not dicom.server.plaintext_open
    assert not _port_open(_plaintext_port(dicom))


def test_the_plaintext_port_opens_for_a_legacy_node_and_accepts_it(dicom: RunningDicom) -> None:
    dicom.enrol("OLDCT", host="127.0.0.1", plaintext=True)
    assert _plaintext_listening(dicom)
    result = _plain_dcmtk(dicom, "echoscu", "OLDCT", _plaintext_port(dicom))
    assert result.returncode == 0, result.stderr
    record = _security_alert(
        dicom, "association accepted", calling_ae_title="OLDCT", transport="plaintext", certificate_subject=""
    )
    assert record["outcome"] == 0


def test_the_plaintext_port_refuses_a_node_not_enrolled_for_plaintext(dicom: RunningDicom) -> None:
    dicom.enrol("OLDCT", host="127.0.0.1", plaintext=True)
    dicom.enrol("CT1", host="127.0.0.1")
    assert _plaintext_listening(dicom)
    result = _plain_dcmtk(dicom, "echoscu", "CT1", _plaintext_port(dicom), "-v")
    assert result.returncode != 0
    assert "Association Rejected" in result.stdout + result.stderr
    record = _association_rejected(
        dicom, calling_ae_title="CT1", transport="plaintext", certificate_subject=""
    )
    assert "not enrolled for plaintext" in record["details"]["decision"]


def test_the_plaintext_port_refuses_the_legacy_ae_title_from_another_address(dicom: RunningDicom) -> None:
    dicom.enrol("OLDCT", host="127.0.0.1", plaintext=True)
    assert _plaintext_listening(dicom)
    assert not _echo(dicom, "OLDCT", None, port=_plaintext_port(dicom), bind="127.0.0.2")
    _association_rejected(dicom, source="127.0.0.2", calling_ae_title="OLDCT", transport="plaintext")


def test_the_plaintext_port_closes_when_the_last_legacy_node_is_removed(dicom: RunningDicom) -> None:
    dicom.enrol("OLDCT", host="127.0.0.1", plaintext=True)
    assert _plaintext_listening(dicom)
    assert _echo(dicom, "OLDCT", None, port=_plaintext_port(dicom))
    NodeRegistry(dicom.pacs.database).remove("OLDCT")
    assert _wait_for(lambda: not dicom.server.plaintext_open, timeout=REFRESH_WAIT)
    assert not _port_open(_plaintext_port(dicom))


# -- the command line: bad input is one line and exit status 2 -----------------------------------


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive (not serving) with one enrolled node, CT1, for the command line tests."""
    data = tmp_path_factory.mktemp("cli") / "data"
    assert _cli("init", "--data", str(data)) == 0
    out = data.parent / "ct1"
    assert (
        _cli("modality", "add", "CT1", "--host", "10.1.2.3", "--issue-cert", str(out), "--data", str(data))
        == 0
    )
    return data


def _error(capsys: pytest.CaptureFixture[str], *argv: str, environ: dict[str, str] | None = None) -> str:
    """Run a command that must fail on bad input; return its one-line error."""
    capsys.readouterr()
    code = _cli(*argv, environ=environ)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pacs: error: ")
    return lines[0]


def _add(archive_dir: Path, ae_title: str, tmp_path: Path, *options: str) -> list[str]:
    return [
        "modality",
        "add",
        ae_title,
        *options,
        "--issue-cert",
        str(tmp_path / "out"),
        "--data",
        str(archive_dir),
    ]


def test_cli_refuses_a_duplicate_ae_title(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = _error(capsys, *_add(archive_dir, "CT1", tmp_path, "--host", "10.1.2.4"))
    assert "CT1" in error
    assert "already enrolled" in error


@pytest.mark.parametrize("ae_title", ["SEVENTEEN-CHARS-X", "CT\\1"], ids=["17 chars", "backslash"])
def test_cli_refuses_an_invalid_ae_title(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], ae_title: str
) -> None:
    error = _error(capsys, *_add(archive_dir, ae_title, tmp_path, "--host", "10.1.2.4"))
    assert "AE title" in error


def test_cli_writes_no_certificate_for_a_refused_enrolment(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _error(capsys, *_add(archive_dir, "SEVENTEEN-CHARS-X", tmp_path, "--host", "10.1.2.4"))
    assert not (tmp_path / "out" / "client.key").exists()
    assert not (tmp_path / "out" / "client.crt").exists()


@pytest.mark.parametrize("host", ["10.1.2.0/33", "10.1.2.3/24", "10.1.2.300", "clinic.example"])
def test_cli_refuses_a_bad_address_or_network(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    error = _error(capsys, *_add(archive_dir, "US1", tmp_path, "--host", host))
    assert "--host" in error
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_unreadable_certificate(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    for pem in (garbage, tmp_path / "missing.pem"):
        argv = [
            "modality",
            "add",
            "US1",
            "--host",
            "10.1.2.4",
            "--cert",
            str(pem),
            "--data",
            str(archive_dir),
        ]
        assert str(pem.name) in _error(capsys, *argv)


def test_cli_refuses_an_unknown_permission(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = _error(
        capsys, *_add(archive_dir, "US1", tmp_path, "--host", "10.1.2.4", "--allow", "store,delete")
    )
    assert "--allow" in error
    assert not (tmp_path / "out").exists()


def test_cli_refuses_plaintext_for_a_network(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = tmp_path / "us1.crt"
    pki.write_certificate(cert, pki.issue_client_cert(pki.create_ca(), "US1").cert)
    argv = ["modality", "add", "US1", "--host", "10.1.2.0/24", "--plaintext", "--cert", str(cert)]
    error = _error(capsys, *argv, "--data", str(archive_dir), environ={"PACS_DICOM_PLAINTEXT_PORT": "11112"})
    assert "--plaintext" in error
    assert "network" in error


def test_cli_lists_the_enrolled_nodes(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _cli("modality", "list", "--data", str(archive_dir)) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("CT1 "))
    assert "10.1.2.3/32" in row
    assert "store" in row
    assert "find" not in row
    assert "issued" in row


def test_cli_refuses_to_remove_an_unknown_node(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = _error(capsys, "modality", "remove", "NOBODY", "--data", str(archive_dir))
    assert "NOBODY" in error
