"""A 2 GB multi-frame object served in bounded memory: frames 1, middle and last from ``pacs serve``.

The objects are made as they are stored: a generator yields the header that pydicom writes
and then one frame at a time into :meth:`storage.archive.Archive.receive`, so not even the
test holds them whole. The native one is 1,000 frames of 1024 x 1024 16-bit samples (2.1 GB),
each frame filled with its own number; the encapsulated one is 251 RLE frames (one fragment
each, no offset table), three distinct frames repeated, about 0.5 GB. A real ``pacs serve``
(one process) serves them; its peak resident set is reset (``/proc/PID/clear_refs``) before
the frames are asked for and read (``VmHWM``) after, and must have grown by less than 100 MB;
each frame must arrive within a second (a generous bound: the issue's acceptance).
"""

from __future__ import annotations

import http.client
import io
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import itemize_frame
from pydicom.pixels import get_encoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    RLELossless,
    generate_uid,
)

from pacs.core.accounts import Accounts
from pacs.core.context import Context
from pacs.core.tokens import Tokens
from tests.conftest import report_figure
from tests.web.browser import PHYSICIAN
from tests.web.viewer_live import PASSWORD, Live, serve_archive
from webviewer.pixels import MemoryCache

SIDE = 1024
NATIVE_FRAMES = 1000  # 2 MiB each: 2.1 GB in all
RLE_FRAMES = 251
GROWTH_BOUND = 100 * 10**6
SECONDS_BOUND = 1.0
OWNER = "reader"


@dataclass(frozen=True)
class Stored:
    """The two objects as stored (their URL paths) and the token that reads them."""

    native: str
    rle: str
    token: str
    seconds: float


def _header(frames: int, syntax: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "LARGE-1", "LARGE^OBJECT", "OT"
    ds.Rows = ds.Columns = SIDE
    ds.SamplesPerPixel, ds.NumberOfFrames = 1, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def _part10(ds: Dataset, pixel_header: bytes, pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The Part 10 bytes of `ds` followed by a Pixel Data element of `pixel_header` and `pieces`."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    yield buffer.getvalue() + pixel_header
    yield from pieces


def native_frame(number: int) -> bytes:
    return np.full(SIDE * SIDE, number, dtype="<u2").tobytes()


def native_object(ds: Dataset) -> Iterator[bytes]:
    """A native object of `ds`'s frames, frame n filled with n."""
    length = NATIVE_FRAMES * SIDE * SIDE * 2
    header = b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")
    return _part10(ds, header, (native_frame(n) for n in range(1, NATIVE_FRAMES + 1)))


def rle_sources() -> list[np.ndarray]:
    """Three distinct frames of noise (RLE does not shrink them: each is about 2 MiB encoded)."""
    rng = np.random.default_rng(14)
    return [rng.integers(0, 4096, size=(SIDE, SIDE), dtype=np.uint16) for _ in range(3)]


def rle_object(ds: Dataset, sources: list[np.ndarray]) -> Iterator[bytes]:
    """An RLE object of `ds`'s frames: frame n is sources[(n - 1) % 3], one fragment each, no offset table."""
    encoder = get_encoder(RLELossless)
    encoded = [
        b"".join(itemize_frame(encoder.encode(s.tobytes(), encoding_plugin="pydicom", **_pixel_kwargs())))
        for s in sources
    ]
    header = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    frames = (encoded[n % 3] for n in range(RLE_FRAMES))
    return _part10(ds, header, iter([*frames, b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"]))


def _pixel_kwargs() -> dict[str, object]:
    return {
        "rows": SIDE,
        "columns": SIDE,
        "samples_per_pixel": 1,
        "bits_allocated": 16,
        "bits_stored": 16,
        "pixel_representation": 0,
        "photometric_interpretation": "MONOCHROME2",
        "number_of_frames": 1,
    }


def receive(pacs: Context, pieces: Iterator[bytes]) -> None:
    incoming = pacs.archive.receive()
    for piece in pieces:
        incoming.write(piece)
    incoming.finish()


def _frames_path(ds: Dataset) -> str:
    series = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    return f"{series}/instances/{ds.SOPInstanceUID}/frames"


def _seed(sources: list[np.ndarray]) -> object:
    def seed(pacs: Context) -> Stored:
        native, rle = _header(NATIVE_FRAMES, ExplicitVRLittleEndian), _header(RLE_FRAMES, RLELossless)
        started = time.perf_counter()
        receive(pacs, native_object(native))
        receive(pacs, rle_object(rle, sources))
        seconds = time.perf_counter() - started
        accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
        accounts.add(OWNER, PHYSICIAN, PASSWORD)
        secret = Tokens(pacs.database, accounts, pacs.audit).create(OWNER, "large", {"read"})[1]
        return Stored(_frames_path(native), _frames_path(rle), secret, seconds)

    return seed


@pytest.fixture(scope="module")
def sources() -> list[np.ndarray]:
    return rle_sources()


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, sources: list[np.ndarray], pytestconfig: pytest.Config
) -> Iterator[Live[Stored]]:
    root = tmp_path_factory.mktemp("large")
    try:
        with serve_archive(root, _seed(sources), []) as served:  # type: ignore[arg-type]
            stored = f"{served.seeded.seconds:.1f} s"
            report_figure(pytestconfig, "large objects stored (2.1 GB native, 0.5 GB RLE)", stored)
            yield served
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _server_pid(live: Live[Stored]) -> int:
    """The process listening on the live server's web port (``pacs serve`` runs as one process)."""
    inode = _listening_inode(live.port)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if any(fd.readlink().name == f"socket:[{inode}]" for fd in (proc / "fd").iterdir()):
                    return int(proc.name)
            except OSError:
                continue
    raise AssertionError(f"no process listens on port {live.port}")


def _listening_inode(port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for process {pid}")


def fetch(live: Live[Stored], path: str) -> tuple[http.client.HTTPResponse, bytes, float]:
    """The viewer's form of one frame over HTTPS with the token: response, body, seconds."""
    started = time.perf_counter()
    connection = http.client.HTTPSConnection("localhost", live.port, context=live.tls(), timeout=60)
    headers = {"Authorization": f"Bearer {live.seeded.token}", "Accept": "application/octet-stream"}
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body, time.perf_counter() - started


def _frames_in_bounded_memory(
    live: Live[Stored], path: str, count: int, config: pytest.Config
) -> dict[int, bytes]:
    """Frames 1, middle and last of `path`, each within the time bound, the server within its growth bound."""
    pid = _server_pid(live)
    fetch(live, f"{path}/1")  # the first request of a process loads its decoders: not the object's cost
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak resident set
    before = _status_kb(pid, "VmRSS")
    bodies, seconds = {}, {}
    for number in (1, (count + 1) // 2, count):
        response, body, took = fetch(live, f"{path}/{number}")
        assert response.status == 200, body[:200]
        assert response.getheader("X-Rows") == str(SIDE)
        bodies[number], seconds[number] = body, took
    growth = (_status_kb(pid, "VmHWM") - before) * 1024
    times = ", ".join(f"{n}: {s * 1000:.0f} ms" for n, s in seconds.items())
    report_figure(
        config, f"large object of {count} frames", f"server RSS +{growth / 1e6:.1f} MB; frames {times}"
    )
    assert growth < GROWTH_BOUND, f"the server grew by {growth / 1e6:.1f} MB"
    assert max(seconds.values()) < SECONDS_BOUND, seconds
    return bodies


def test_frames_of_a_2_gb_native_object_come_fast_in_bounded_memory(
    live: Live[Stored], pytestconfig: pytest.Config
) -> None:
    bodies = _frames_in_bounded_memory(live, live.seeded.native, NATIVE_FRAMES, pytestconfig)
    for number, body in bodies.items():
        assert body == native_frame(number)


def test_frames_of_a_large_rle_object_without_an_offset_table_come_fast_in_bounded_memory(
    live: Live[Stored], sources: list[np.ndarray], pytestconfig: pytest.Config
) -> None:
    bodies = _frames_in_bounded_memory(live, live.seeded.rle, RLE_FRAMES, pytestconfig)
    for number, body in bodies.items():
        assert np.array_equal(np.frombuffer(body, "<u2").reshape(SIDE, SIDE), sources[(number - 1) % 3])


def test_a_memory_cache_keeps_its_byte_budget() -> None:
    cache = MemoryCache(100)
    cache.put("big", b"x" * 101)
    assert cache.get("big") is None  # larger than the whole budget: not kept
    for key in "abcd":
        cache.put(key, b"x" * 30)
    assert cache.get("a") is None and all(cache.get(k) is not None for k in "bcd")
    cache.put("e", b"x", size=70)  # its stated size counts, not its length
    assert [k for k in "bcde" if cache.get(k) is not None] == ["d", "e"]
