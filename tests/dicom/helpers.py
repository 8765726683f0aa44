"""Helpers of the DICOM service tests: TLS associations, presentation contexts, audit polling, dcmtk."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    CTImageStorage,
)

from pacs.core.context import Context
from storage.models import AuditRecord
from tests.conftest import NodeFiles, RunningDicom

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
SUCCESS, PENDING, OUT_OF_RESOURCES, MOVE_DESTINATION_UNKNOWN = 0x0000, 0xFF00, 0xA700, 0xA801
TRAILING_PADDING = 0xFFFCFFFC

# dcmtk's storescu (3.6.7) proposes only uncompressed transfer syntaxes unless told otherwise,
# and with its default of every storage SOP class it has no presentation context left for the
# file's own syntax. So each sample is sent with -R (only the SOP classes of the files) and the
# -x option that proposes the file's own transfer syntax; with that, storescu sends every sample
# (no pynetdicom fallback needed).
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.1": "-xe",  # explicit VR little endian
    "1.2.840.10008.1.2": "-xi",  # implicit VR little endian
    "1.2.840.10008.1.2.2": "-xb",  # explicit VR big endian
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "-xx",  # JPEG extended
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.5": "-xr",  # RLE lossless
    "1.2.840.10008.1.2.1.99": "-xd",  # deflated explicit VR little endian
}


def _client_tls(node: NodeFiles) -> ssl.SSLContext:
    """A verifying TLS client context presenting `node`'s certificate and trusting the PACS CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(node.cert, node.key)
    context.load_verify_locations(cafile=node.ca)
    return context


@contextmanager
def _association(
    dicom: RunningDicom,
    node: NodeFiles,
    contexts: list[PresentationContext],
    *,
    ext_neg: list[SCP_SCU_RoleSelectionNegotiation] | None = None,
    evt_handlers: list[tuple[Any, Callable[..., Any]]] | None = None,
) -> Iterator[Association]:
    """An established pynetdicom association with the listener, as `node`, over mutual TLS."""
    ae = AE(ae_title=node.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.requested_contexts = contexts
    assoc = ae.associate(
        "127.0.0.1",
        dicom.port,
        ae_title=dicom.ae_title,
        tls_args=(_client_tls(node), "localhost"),
        ext_neg=ext_neg,
        evt_handlers=evt_handlers,
    )
    assert assoc.is_established, "the association with the PACS was not accepted"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def _storage() -> list[PresentationContext]:
    return [build_context(CTImageStorage, ExplicitVRLittleEndian)]


def _assert_same_values(received: Dataset, sent: Dataset) -> None:
    """The same elements with the same values, Pixel Data byte for byte.

    For sending, dcmtk drops (FFFC,FFFC) Data Set Trailing Padding and encodes encapsulated
    Pixel Data as OB (some samples say OW), so those two are not the receiver's doing.
    """
    expected = [elem.tag for elem in sent if elem.tag != TRAILING_PADDING]
    assert [elem.tag for elem in received] == expected
    for tag in expected:
        assert received[tag].value == sent[tag].value, f"{tag} {sent[tag].keyword} differs"
    assert received.PixelData == sent.PixelData


def _audit(
    pacs: Context, event_id: str, predicate: Callable[[AuditRecord], bool] = lambda r: True
) -> list[AuditRecord]:
    return [r for r in pacs.audit.records() if r.event_id == event_id and predicate(r)]


def _poll_audit(
    pacs: Context,
    event_id: str,
    predicate: Callable[[AuditRecord], bool],
    *,
    count: int,
    timeout: float = 5.0,
) -> list[AuditRecord]:
    """The matching audit records, waiting up to `timeout` seconds for `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = _audit(pacs, event_id, predicate)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _findscu_responses(result: subprocess.CompletedProcess[str], outdir: Path) -> list[Dataset]:
    assert result.returncode == 0, result.stderr
    return [pydicom.dcmread(path, force=True) for path in sorted(outdir.glob("rsp*.dcm"))]


def _store_files(pacs: Context, files: list[Path]) -> None:
    for path in files:
        pacs.archive.store(path)


@dataclass(frozen=True)
class QueryData:
    """Three studies of two patients, for queries and retrieves."""

    quixote_study: str  # ct_dir: 6 CT slices of QUIXOTE^DULCINEA (PID-Q-7731)
    quixote_series: str
    quixote_instances: frozenset[str]
    quixote_files: tuple[Path, ...]
    quixote_second_study: str  # 3 more slices of the same patient, in another study
    panza_study: str  # 2 slices of PANZA^SANCHO (PID-P-0002)
    files: tuple[Path, ...]
