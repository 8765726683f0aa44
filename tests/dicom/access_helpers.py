"""Helpers of the DICOM access tests: audit alerts, TLS contexts, associations, dcmtk and the command line."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
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
from pacs.dicom import policy
from tests.conftest import NodeFiles, RunningDicom

SECURITY_ALERT = "110113"
PATIENT_NAME = "QUIXOTE^DULCINEA"
PATIENT_ID = "PID-Q-7731"
REFRESH_WAIT = 4.0  # the server re-reads enrolment every 2 s


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


def _no_patient_data(identifier: Dataset | None) -> bool:
    """Whether a response identifier is absent or names no patient or study."""
    if identifier is None:
        return True
    keywords = {element.keyword for element in identifier}
    return not keywords & {"PatientName", "PatientID", "StudyInstanceUID", "SOPInstanceUID"}


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


def _transfers(dicom: RunningDicom) -> list[dict[str, Any]]:
    return [as_dict(r) for r in dicom.pacs.audit.records() if r.event_id == "110104" and r.action == "R"]
