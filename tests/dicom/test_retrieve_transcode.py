"""Retrieve to a node that takes only uncompressed syntaxes: transcoded, pixel-equal, originator kept.

One archive holds every sample of pydicom's and pydicom-data's test files whose transfer
syntax is neither Explicit nor Implicit VR Little Endian (each under a fresh SOP Instance
UID, written into the file's own bytes). A pynetdicom peer that proposes and accepts only
those two syntaxes fetches them all by C-GET and receives them all by C-MOVE; each
arrives decodable and pixel-equal to pydicom's decode of the original.
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import threading
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
import pytest
from data_store import DataStore
from pydicom.data import get_testdata_file
from pydicom.data.data_manager import DATA_ROOT
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE, _config, build_context, evt
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_role
from pynetdicom.sop_class import (
    EnhancedCTImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacs.core.context import CA_CERT
from pacs.dicom.sending import open_data_set
from storage.errors import PacsError
from tests.conftest import RunningDicom, _free_port, running_dicom
from tests.dicom.helpers import SUCCESS, _association

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
SUBOPERATIONS_FAILED, MOVE_DESTINATION_UNKNOWN = 0xA702, 0xA801
# Its JPEG 2000 codestream claims 14,540,801 tiles: refused before any decoder runs, so its
# retrieve fails with that reason (tests/dicom/test_retrieve_limits.py).
UNDECODABLE = {"JPEG2000-embedded-sequence-delimiter.dcm"}
# What the archive refuses to store: meta says explicit VR, data set is implicit (read as truncated);
# truncated on purpose; a Study Instance UID that is not a UID.
REFUSED = {"SC_rgb_jpeg.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm", "bad_sequence.dcm"}


def _samples() -> list[Path]:
    """Every sample with Pixel Data in a syntax other than Explicit/Implicit VR LE, first of its name."""
    paths = sorted(Path(DATA_ROOT, "test_files").glob("*.dcm"))
    paths += sorted(Path(path) for path in DataStore().get_paths("*.dcm"))
    found: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                syntax = ds.file_meta.TransferSyntaxUID
            except Exception:  # files without meta, unreadable on purpose: not objects to retrieve
                continue
            if syntax not in UNCOMPRESSED and "PixelData" in pydicom.dcmread(path):
                found.setdefault(path.name, path)
    return [path for name, path in found.items() if name not in UNDECODABLE]


def _with_fresh_uid(path: Path, out: Path) -> str:
    """`path` copied to `out` under a fresh SOP Instance UID (of the same length, in its own bytes).

    A deflated sample, and one without the Study and Series UIDs the archive requires, is
    rewritten by pydicom instead (with new study and series UIDs where they are missing).
    """
    header = pydicom.dcmread(path, stop_before_pixels=True)
    old = str(header.SOPInstanceUID)
    new = "2.25." + str(secrets.randbelow(9) + 1)
    new += "".join(str(secrets.randbelow(10)) for _ in range(len(old) - len(new)))
    if header.file_meta.TransferSyntaxUID.is_deflated or "StudyInstanceUID" not in header:
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = new
        ds.StudyInstanceUID = ds.get("StudyInstanceUID") or generate_uid()
        ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or generate_uid()
        ds.save_as(out)
    else:
        out.write_bytes(path.read_bytes().replace(old.encode(), new.encode()))
    return new


@dataclass
class Samples:
    """The archive of samples: SOP Instance UID -> the file stored, and what it refused."""

    dicom: RunningDicom
    stored: dict[str, Path]
    refused: dict[str, str]  # file name -> why


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Samples]:
    tmp = tmp_path_factory.mktemp("transcode")
    with running_dicom(tmp) as dicom:
        stored: dict[str, Path] = {}
        refused: dict[str, str] = {}
        for index, path in enumerate(_samples()):
            copy = tmp / f"{index:03d}-{path.name}"
            uid = _with_fresh_uid(path, copy)
            try:
                dicom.pacs.archive.store(copy)
            except PacsError as error:
                refused[path.name] = str(error)
                continue
            stored[uid] = copy
        yield Samples(dicom, stored, refused)


@dataclass
class Peer:
    """What an uncompressed-only storage SCP received: data sets and their C-STORE requests."""

    received: list[Dataset] = field(default_factory=list)
    originators: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_store(self, event: Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        request = event.request
        with self.lock:
            self.received.append(dataset)
            self.originators.append(
                (
                    str(request.MoveOriginatorApplicationEntityTitle or "").strip(),
                    request.MoveOriginatorMessageID,
                )
            )
        return SUCCESS


@contextmanager
def _uncompressed_destination(
    dicom: RunningDicom, ae_title: str, on_store: Callable[[Event], int] | None = None
) -> Iterator[Peer]:
    """A C-MOVE destination over TLS accepting only Explicit and Implicit VR Little Endian."""
    port = _free_port()
    node = dicom.enrol(ae_title, allow="store", port=port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(node.cert, node.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=dicom.pacs.settings.tls_dir / CA_CERT)
    peer = Peer()
    ae = AE(ae_title=ae_title)
    for sop_class in [*_sop_classes(dicom), EnhancedCTImageStorage]:
        ae.add_supported_context(sop_class, UNCOMPRESSED)
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        ssl_context=context,
        evt_handlers=[(evt.EVT_C_STORE, on_store or peer.on_store)],
    )
    try:
        yield peer
    finally:
        server.shutdown()
        ae.shutdown()


def _sop_classes(dicom: RunningDicom) -> list[str]:
    return sorted(
        {str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in _stored_paths(dicom)}
    )


def _stored_paths(dicom: RunningDicom) -> list[Path]:
    return sorted(dicom.tmp.glob("[0-9][0-9][0-9]-*.dcm"))


def _image_query(uids: list[str]) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.SOPInstanceUID = uids
    return query


def _assert_pixel_equal(received: Dataset, original: Path) -> None:
    assert received.file_meta.TransferSyntaxUID in UNCOMPRESSED
    expected = pydicom.dcmread(original).pixel_array
    actual = received.pixel_array
    assert actual.shape == expected.shape, original.name
    assert np.array_equal(actual, expected), f"{original.name}: pixels differ"


def _get(samples: Samples, uids: list[str], sop_classes: list[str]) -> tuple[list[Dataset], list[Dataset]]:
    """C-GET of `uids` by a requestor that proposes only uncompressed syntaxes: (responses, received)."""
    peer = Peer()
    dicom = samples.dicom
    node = dicom.enrol(f"GET{secrets.token_hex(3).upper()}", allow="get")
    contexts: list[PresentationContext] = [build_context(StudyRootQueryRetrieveInformationModelGet)]
    contexts += [build_context(sop_class, UNCOMPRESSED) for sop_class in sop_classes]
    roles = [build_role(sop_class, scp_role=True) for sop_class in sop_classes]
    with _association(
        dicom, node, contexts, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, peer.on_store)]
    ) as assoc:
        responses = [
            status
            for status, _ in assoc.send_c_get(_image_query(uids), StudyRootQueryRetrieveInformationModelGet)
        ]
    return responses, peer.received


def test_every_sample_is_stored_but_the_two_the_archive_refuses(samples: Samples) -> None:
    assert set(samples.refused) <= REFUSED, "\n".join(f"{k}: {v}" for k, v in samples.refused.items())
    assert len(samples.stored) >= 60


def test_c_get_of_every_sample_by_an_uncompressed_only_requestor_arrives_pixel_equal(
    samples: Samples,
) -> None:
    responses, received = _get(samples, list(samples.stored), _sop_classes(samples.dicom))

    final = responses[-1]
    assert (final.Status, final.NumberOfFailedSuboperations) == (SUCCESS, 0)
    assert final.NumberOfCompletedSuboperations == len(samples.stored)
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(samples.stored)
    for dataset in received:
        _assert_pixel_equal(dataset, samples.stored[str(dataset.SOPInstanceUID)])


def test_c_move_of_every_sample_to_an_uncompressed_only_destination_arrives_pixel_equal_from_the_requester(
    samples: Samples,
) -> None:
    dicom = samples.dicom
    requester = dicom.enrol("MOVER", allow="move")
    with (
        _uncompressed_destination(dicom, "PLAINVIEW") as peer,
        _association(dicom, requester, [build_context(StudyRootQueryRetrieveInformationModelMove)]) as assoc,
    ):
        responses = list(
            assoc.send_c_move(
                _image_query(list(samples.stored)),
                "PLAINVIEW",
                StudyRootQueryRetrieveInformationModelMove,
                msg_id=77,
            )
        )

    final = responses[-1][0]
    assert (final.Status, final.NumberOfFailedSuboperations) == (SUCCESS, 0)
    assert sorted(str(ds.SOPInstanceUID) for ds in peer.received) == sorted(samples.stored)
    assert set(peer.originators) == {("MOVER", 77)}
    for dataset in peer.received:
        _assert_pixel_equal(dataset, samples.stored[str(dataset.SOPInstanceUID)])


def test_retrieves_leave_every_stored_object_byte_identical(samples: Samples) -> None:
    archive = samples.dicom.pacs.archive
    _get(samples, list(samples.stored)[:10], _sop_classes(samples.dicom))
    for uid, path in samples.stored.items():
        with archive.open(uid) as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
        assert archive.instance(uid).version == 1


def _undecodable(samples: Samples) -> str:
    """A JPEG Baseline object whose one fragment holds no JPEG image, stored; its SOP Instance UID."""
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(1000) + b"\xff\xd9"])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = samples.dicom.tmp / "undecodable.dcm"
    ds.save_as(path)
    return samples.dicom.pacs.archive.store(path).sop_uid


def test_a_sample_that_cannot_be_decoded_fails_its_c_move_sub_operation_with_a_reason_not_0xa801(
    samples: Samples,
) -> None:
    dicom = samples.dicom
    uid = _undecodable(samples)
    requester = dicom.enrol("MOVER2", allow="move")
    with (
        _uncompressed_destination(dicom, "PLAINVIEW2") as peer,
        _association(dicom, requester, [build_context(StudyRootQueryRetrieveInformationModelMove)]) as assoc,
    ):
        responses = list(
            assoc.send_c_move(_image_query([uid]), "PLAINVIEW2", StudyRootQueryRetrieveInformationModelMove)
        )

    final, identifier = responses[-1]
    assert final.Status == SUBOPERATIONS_FAILED != MOVE_DESTINATION_UNKNOWN
    assert (final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (1, 0)
    assert final.ErrorComment == "the JPEG stream has no readable frame header"
    assert identifier.FailedSOPInstanceUIDList == uid
    assert peer.received == []


def test_a_sample_that_cannot_be_decoded_fails_its_c_get_sub_operation_and_the_others_arrive(
    samples: Samples,
) -> None:
    uid = _undecodable(samples)
    good = next(iter(samples.stored))
    sop_classes = sorted(
        {SecondaryCaptureImageStorage, str(pydicom.dcmread(samples.stored[good]).SOPClassUID)}
    )
    responses, received = _get(samples, [uid, good], sop_classes)

    final = responses[-1]
    assert final.Status == 0xB000  # sub-operations complete, one or more failures
    assert (final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (1, 1)
    assert final.ErrorComment == "the JPEG stream has no readable frame header"
    assert [str(ds.SOPInstanceUID) for ds in received] == [good]


def _data_set_digest(stream: BinaryIO) -> str:
    """SHA-256 of a Part 10 file's data set (its meta is each writer's own), read 1 MiB at a time."""
    source = open_data_set(stream)
    digest = hashlib.sha256(source.head)
    for chunk in iter(lambda: source.stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _large_object(path: Path, frames: int) -> Dataset:
    """A native multi-frame CT of `frames` 1024 x 1024 16-bit frames written to `path` (its header)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.Rows = ds.Columns = 1024
    ds.NumberOfFrames = frames
    ds.PixelData = np.arange(1024 * 1024 * frames, dtype="<u2").tobytes()
    ds.save_as(path)
    del ds.PixelData
    return ds


def test_c_move_of_a_200_mb_object_streams_it_in_bounded_memory(samples: Samples) -> None:
    dicom = samples.dicom
    path = dicom.tmp / "large.dcm"
    header = _large_object(path, frames=100)
    dicom.pacs.archive.store(path)
    size = path.stat().st_size
    with path.open("rb") as stream:
        digest = _data_set_digest(stream)
    requester = dicom.enrol("MOVER3", allow="move")
    received: list[str] = []

    def on_store(event: Event) -> int:  # the data set lands in pynetdicom's temporary file, not in memory
        with open(event.dataset_path, "rb") as stream:
            received.append(_data_set_digest(stream))
        return SUCCESS

    previous = _config.STORE_RECV_CHUNKED_DATASET
    _config.STORE_RECV_CHUNKED_DATASET = True
    try:
        with (
            _uncompressed_destination(dicom, "BIGVIEW", on_store=on_store),
            _association(
                dicom, requester, [build_context(StudyRootQueryRetrieveInformationModelMove)]
            ) as assoc,
        ):
            tracemalloc.start()
            responses = list(
                assoc.send_c_move(
                    _image_query([str(header.SOPInstanceUID)]),
                    "BIGVIEW",
                    StudyRootQueryRetrieveInformationModelMove,
                )
            )
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    finally:
        _config.STORE_RECV_CHUNKED_DATASET = previous

    assert responses[-1][0].Status == SUCCESS
    assert received == [digest]
    assert size > 200 * 2**20
    assert peak < 32 * 2**20, f"{peak / 2**20:.1f} MiB traced while moving {size / 2**20:.0f} MiB"
