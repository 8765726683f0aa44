"""Decompression bombs: a frame is decoded only once its headers say it fits ``[web] max_frame_mb``.

An enrolled node can store any object. Its header can declare a frame far larger than its
bytes (16384 x 16384 x 16 bits of RLE in a few hundred bytes), a JPEG-LS or JPEG stream can
claim more than its header, JPEG 2000 can cut a small image into 65,025 tiles, RLE runs can
run past the frame, and a deflated data set can inflate a thousandfold. Each is answered
4xx with a message, without the web process allocating what the object declares; a C-GET
still returns the object unchanged, since it never decodes. The memory figures come from a
fresh process that resets its peak resident set (Linux's ``/proc/self/clear_refs``) before
each request and reads it (``VmHWM``) after.
"""

from __future__ import annotations

import io
import json
import re
import ssl
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import openjpeg
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.pixels import pixel_array
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet
from werkzeug.test import TestResponse

from pacs.core.config import with_overrides
from pacs.core.context import Context, initialise, open_pacs
from pacs.serve.https import WebServer
from tests.conftest import REPO, NodeFiles, RunningDicom, assert_same_dataset, report_figure
from tests.web.dicomweb_helpers import viewer_frame
from tests.web.web_helpers import Browser, Web, make_web

MIB = 2**20
DEFAULT_MAX = 256 * MIB  # WebConfig's and [web] max_frame_mb's default
GROWTH_BOUND_MIB = 32  # what a refused bomb may cost, besides a few copies of its object (decrypted, parsed)
RUN = b"\x81\x00"  # an RLE replicate run: 128 zero bytes
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}


# -- objects ----------------------------------------------------------------------------------------


def image(syntax: str, rows: int, columns: int, *, bits: int = 16, samples: int = 1) -> Dataset:
    """A Secondary Capture image header (no pixel data yet) in transfer syntax `syntax`."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = "BOMB^BERTHA", "PID-BOMB"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", 1, 1
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def rle_frame(segments: list[bytes]) -> bytes:
    """An RLE frame: the 64-byte header with the segments' offsets, then the segments."""
    offsets, position = [], 64
    for segment in segments:
        offsets.append(position)
        position += len(segment)
    return struct.pack("<16I", len(segments), *offsets, *[0] * (15 - len(segments))) + b"".join(segments)


def encapsulated(ds: Dataset, frames: list[bytes]) -> Dataset:
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    return ds


def rle_bomb(path: Path, rows: int = 16384, columns: int = 16384) -> Path:
    """RLE whose header declares rows x columns x 16 bits (512 MiB), over two one-run segments."""
    return save(encapsulated(image(RLELossless, rows, columns), [rle_frame([RUN, RUN])]), path)


def rle_runs_bomb(path: Path) -> Path:
    """A 256 x 256 x 16-bit RLE frame (128 KiB) whose segments' runs decode to 256 MiB each."""
    segment = RUN * (2 * MIB)
    return save(encapsulated(image(RLELossless, 256, 256), [rle_frame([segment, segment])]), path)


def first_frame(ds: Dataset) -> bytes:
    return get_frame(ds.PixelData, 0, number_of_frames=int(ds.get("NumberOfFrames") or 1))


def claiming(sample: str, path: Path, rows: int, columns: int) -> Path:
    """`sample` with its (JPEG, JPEG-LS or JPEG 2000) stream claiming rows x columns, its header unchanged."""
    ds = pydicom.dcmread(get_testdata_file(sample))
    stream = bytearray(first_frame(ds))
    if stream[:4] == b"\xff\x4f\xff\x51":  # JPEG 2000: Xsiz, Ysiz of the SIZ segment
        struct.pack_into(">II", stream, 8, columns, rows)
    else:
        position = 2
        while stream[position + 1] not in SOF_MARKERS:
            position += 2 + struct.unpack_from(">H", stream, position + 2)[0]
        struct.pack_into(">HH", stream, position + 5, rows, columns)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return save(encapsulated(ds, [bytes(stream)]), path)


def j2k_tiles_bomb(path: Path) -> Path:
    """A 255 x 255 JPEG 2000 image (127 KiB decoded) cut into 1 x 1 tiles: 65,025 of them."""
    stream = bytearray(openjpeg.encode(np.zeros((255, 255), dtype=np.uint16), codec_format=0))
    struct.pack_into(">II", stream, 24, 1, 1)  # XTsiz, YTsiz of the SIZ segment
    return save(encapsulated(image(JPEG2000Lossless, 255, 255), [bytes(stream)]), path)


def deflate_bomb(path: Path, inflated: int) -> Path:
    """A deflated 64 x 64 image whose data set inflates to `inflated` bytes (zeros as Pixel Data)."""
    ds = image(DeflatedExplicitVRLittleEndian, 64, 64)
    ds.PixelData = b""
    written = io.BytesIO()
    ds.save_as(written, enforce_file_format=True)
    data = written.getvalue()
    meta_end = 132 + 12 + struct.unpack_from("<I", data, 132 + 8)[0]
    plain = DicomBytesIO()
    plain.is_little_endian, plain.is_implicit_VR = True, False  # what deflate wraps
    del ds.PixelData
    write_dataset(plain, ds)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [data[:meta_end], deflater.compress(plain.getvalue())]
    parts.append(deflater.compress(b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", inflated)))
    zeros = bytes(MIB)
    for _ in range(inflated // MIB):
        parts.append(deflater.compress(zeros))
    parts.append(deflater.flush())
    path.write_bytes(b"".join(parts))
    return path


# -- the viewer -------------------------------------------------------------------------------------


def open_archive(root: Path) -> Context:
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    return open_pacs(settings)


def frame_url(path: Path, number: int = 1) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    return f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{number}"


def tags_url(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return f"/studies/{ds.StudyInstanceUID}/instances/{ds.SOPInstanceUID}/tags"


def refusal(response: TestResponse) -> str:
    """The message of a 4xx answer in plain text."""
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:200])
    assert response.mimetype == "text/plain"
    return response.text


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The viewer with its default limits, on one embedded archive for this module."""
    opened = open_archive(tmp_path_factory.mktemp("limits"))
    yield make_web(opened)
    opened.close()


@pytest.fixture(scope="module")
def doc(web: Web) -> Browser:
    return web.logged_in(web.user("doc"))


def stored(web: Web, path: Path) -> Path:
    web.pacs.archive.store(path)
    return path


def test_an_rle_frame_declared_at_512_mib_is_refused_with_the_sizes_in_the_message(
    web: Web, doc: Browser, tmp_path: Path
) -> None:
    bomb = stored(web, rle_bomb(tmp_path / "bomb.dcm"))
    assert bomb.stat().st_size < 4096
    message = refusal(viewer_frame(doc, frame_url(bomb)))
    assert "16384 x 16384" in message
    assert "512.0 MiB" in message and "256.0 MiB" in message and "max_frame_mb" in message


def test_a_frame_at_the_configured_maximum_decodes_and_one_row_more_is_refused(tmp_path: Path) -> None:
    opened = open_archive(tmp_path)
    try:
        small = make_web(opened, max_frame_bytes=512 * 512 * 2)
        doc = small.logged_in(small.user("doc"))
        paths = {}
        for rows in (512, 513):
            ds = image(ExplicitVRLittleEndian, rows, 512)
            ds.PixelData = np.arange(rows * 512, dtype=np.uint16).tobytes()
            paths[rows] = stored(small, save(ds, tmp_path / f"{rows}.dcm"))
        response = viewer_frame(doc, frame_url(paths[512]))
        assert response.status_code == 200
        assert np.array_equal(np.frombuffer(response.data, "<u2"), np.arange(512 * 512, dtype=np.uint16))
        assert "0.5 MiB per frame" in refusal(viewer_frame(doc, frame_url(paths[513])))
    finally:
        opened.close()


@pytest.mark.parametrize(
    "sample", ["MR_small_RLE.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_16bit.dcm", "emri_small_RLE.dcm"]
)
def test_rle_frames_still_decode_to_what_pydicom_reads(web: Web, doc: Browser, sample: str) -> None:
    path = Path(get_testdata_file(sample))
    stored(web, path)
    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames") or 1)
    response = viewer_frame(doc, frame_url(path, frames))
    assert response.status_code == 200, response.text
    expected = pixel_array(ds, index=frames - 1 if frames > 1 else None)
    if expected.ndim == 3:
        bits = int(ds.BitsStored)
        expected = (expected >> (bits - 8)).astype(np.uint8) if bits > 8 else expected
        difference = np.abs(np.frombuffer(response.data, np.uint8).astype(int) - expected.ravel().astype(int))
        assert difference.max() <= 1
    else:
        assert np.array_equal(
            np.frombuffer(response.data, expected.dtype.newbyteorder("<")), expected.ravel()
        )


def test_rle_runs_that_decode_past_the_frame_are_refused(web: Web, doc: Browser, tmp_path: Path) -> None:
    bomb = stored(web, rle_runs_bomb(tmp_path / "runs.dcm"))
    assert "cannot be decoded" in refusal(viewer_frame(doc, frame_url(bomb)))


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", "JPEG"),
        ("JPGExtended.dcm", "JPEG"),
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG"),
        ("MR_small_jp2klossless.dcm", "JPEG 2000"),
    ],
)
def test_a_compressed_stream_claiming_more_than_its_header_is_refused_before_decoding(
    web: Web, doc: Browser, tmp_path: Path, sample: str, kind: str
) -> None:
    header = pydicom.dcmread(get_testdata_file(sample), stop_before_pixels=True)
    bomb = stored(web, claiming(sample, tmp_path / "claims.dcm", 2048, 2048))
    message = refusal(viewer_frame(doc, frame_url(bomb)))
    assert f"the {kind} stream declares 2048 x 2048" in message
    assert f"the header {header.Rows} x {header.Columns}" in message


def test_a_jpeg_2000_stream_of_65025_tiles_is_refused_before_openjpeg_reads_it(
    web: Web, doc: Browser, tmp_path: Path
) -> None:
    bomb = stored(web, j2k_tiles_bomb(tmp_path / "tiles.dcm"))
    assert "65,025 tiles" in refusal(viewer_frame(doc, frame_url(bomb)))


def test_a_deflated_data_set_inflating_past_the_maximum_is_refused_for_frames_and_tags(
    tmp_path: Path,
) -> None:
    opened = open_archive(tmp_path)
    try:
        small = make_web(opened, max_frame_bytes=4 * MIB)
        doc = small.logged_in(small.user("doc"))
        bomb = stored(small, deflate_bomb(tmp_path / "dfl.dcm", 16 * MIB))
        assert "inflates to more than 4.0 MiB" in refusal(viewer_frame(doc, frame_url(bomb)))
        assert "inflates to more than 4.0 MiB" in refusal(doc.get(tags_url(bomb)))
        normal = stored(small, Path(get_testdata_file("image_dfl.dcm")))
        assert viewer_frame(doc, frame_url(normal)).status_code == 200
        assert doc.get(tags_url(normal)).status_code == 200
    finally:
        opened.close()


def test_native_pixel_data_shorter_than_its_header_declares_is_refused(
    web: Web, doc: Browser, tmp_path: Path
) -> None:
    short = image(ExplicitVRLittleEndian, 512, 512)
    short.PixelData = bytes(1000)
    url = frame_url(stored(web, save(short, tmp_path / "s.dcm")))
    assert "cannot be decoded" in refusal(viewer_frame(doc, url))
    huge = image(ExplicitVRLittleEndian, 16384, 16384)
    huge.PixelData = bytes(1000)
    assert "512.0 MiB" in refusal(viewer_frame(doc, frame_url(stored(web, save(huge, tmp_path / "h.dcm")))))


def test_a_header_without_rows_or_with_unsupported_bits_is_refused(
    web: Web, doc: Browser, tmp_path: Path
) -> None:
    ds = image(ExplicitVRLittleEndian, 4, 4)
    ds.PixelData = bytes(32)
    del ds.Rows
    url = frame_url(stored(web, save(ds, tmp_path / "r.dcm")))
    assert "the header has no Rows" in refusal(viewer_frame(doc, url))
    ds = image(ExplicitVRLittleEndian, 4, 4, bits=12)
    ds.PixelData = bytes(32)
    url = frame_url(stored(web, save(ds, tmp_path / "b.dcm")))
    assert "12 bits allocated" in refusal(viewer_frame(doc, url))


def test_frames_decoded_at_once_share_one_budget_of_the_largest_frame(tmp_path: Path) -> None:
    opened = open_archive(tmp_path)
    try:
        busy = make_web(opened, decode_wait_seconds=0.0)
        doc = busy.logged_in(busy.user("doc"))
        path = stored(busy, Path(get_testdata_file("CT_small.dcm")))
        decoding = busy.app.extensions["pacs"].decoding
        with decoding.reserve(DEFAULT_MAX - 1000):  # another request decoding a large frame
            response = viewer_frame(doc, frame_url(path))
            assert response.status_code == 503
            assert "busy decoding other large frames" in response.text
        assert viewer_frame(doc, frame_url(path)).status_code == 200
    finally:
        opened.close()


def test_pacs_serve_gives_the_viewer_the_configured_max_frame_mb(tmp_path: Path) -> None:
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    opened = open_pacs(with_overrides(settings, "web", max_frame_mb=64))
    try:
        assert WebServer(opened).app.extensions["pacs"].decoding.max_frame_bytes == 64 * MIB
    finally:
        opened.close()


# -- memory, measured in a fresh process ------------------------------------------------------------


def _resident_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert match, field
    return int(match.group(1))


def _growth_mib(requests: Callable[[], list[TestResponse]]) -> tuple[float, list[TestResponse]]:
    """How far the resident set rose above where it was while `requests` ran, in MiB."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
    before = _resident_kib("VmRSS")
    responses = requests()
    return (_resident_kib("VmHWM") - before) / 1024, responses


def _concurrently(browsers: list[Browser], url: str) -> list[TestResponse]:
    responses: list[TestResponse] = []
    threads = [threading.Thread(target=lambda b=b: responses.append(viewer_frame(b, url))) for b in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def measure_bombs(root: Path) -> None:
    """Store each bomb, request it, print {name: [statuses, growth in MiB]} (run in a fresh process)."""
    bombs = {
        "RLE 16384x16384x16": rle_bomb(root / "rle.dcm"),
        "RLE runs past the frame": rle_runs_bomb(root / "runs.dcm"),
        "JPEG-LS claiming 60000x60000": claiming(
            "MR_small_jpeg_ls_lossless.dcm", root / "jls.dcm", 60000, 60000
        ),
        "JPEG 2000 of 65,025 tiles": j2k_tiles_bomb(root / "tiles.dcm"),
        "deflate inflating to 512 MiB": deflate_bomb(root / "dfl.dcm", 512 * MIB),
    }
    normal = [Path(get_testdata_file(name)) for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm")]
    normal += [Path(get_testdata_file(name)) for name in ("MR_small_jp2klossless.dcm", "image_dfl.dcm")]
    opened = open_archive(root)
    web = make_web(opened)
    for path in [*bombs.values(), *normal]:
        opened.archive.store(path)
    browsers = [web.logged_in(web.user(name)) for name in ("one", "two")]
    for path in normal:  # the decoders' modules are loaded before anything is measured
        assert viewer_frame(browsers[0], frame_url(path)).status_code == 200
    urls = {name: frame_url(path) for name, path in bombs.items()}  # pydicom inflates a deflated file whole
    figures = {}
    for name, url in urls.items():
        growth, responses = _growth_mib(lambda url=url: [viewer_frame(browsers[0], url)])
        figures[name] = [[r.status_code for r in responses], growth, bombs[name].stat().st_size / MIB]
    growth, responses = _growth_mib(lambda: _concurrently(browsers, urls["RLE 16384x16384x16"]))
    figures["RLE 16384x16384x16, two at once"] = [[r.status_code for r in responses], growth, 0.0]
    opened.close()
    print(json.dumps(figures))


def test_bombs_are_refused_without_the_process_allocating_what_they_declare(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tests.web.test_frame_limits import measure_bombs as m; "
            "from pathlib import Path; m(Path(sys.argv[1]))",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (statuses, growth, _) in figures.items():
        report_figure(request.config, f"peak RSS growth, {name}", f"{growth:.1f} MiB, HTTP {statuses}")
    assert all(status == 422 for statuses, _, _ in figures.values() for status in statuses), figures
    # Each declares 256 MiB or more; what it may cost is its own (decrypted, parsed) copies.
    over = {
        name: growth for name, (_, growth, size) in figures.items() if growth > GROWTH_BOUND_MIB + 8 * size
    }
    assert not over, figures


# -- C-GET never decodes ----------------------------------------------------------------------------


def client_tls(node: NodeFiles) -> ssl.SSLContext:
    """A verifying TLS client context presenting `node`'s certificate and trusting the PACS CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(node.cert, node.key)
    context.load_verify_locations(cafile=node.ca)
    return context


def test_c_get_returns_the_bomb_unchanged_while_the_viewer_refuses_it(
    dicom: RunningDicom, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,get")
    bomb = rle_bomb(tmp_path / "bomb.dcm")
    sent = pydicom.dcmread(bomb)
    received: list[Dataset] = []

    def on_store(event: Event) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title=node.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.requested_contexts = [
        build_context(StudyRootQueryRetrieveInformationModelGet),
        build_context(SecondaryCaptureImageStorage, RLELossless),
    ]
    assoc = ae.associate(
        "127.0.0.1",
        dicom.port,
        ae_title=dicom.ae_title,
        tls_args=(client_tls(node), "localhost"),
        ext_neg=[build_role(SecondaryCaptureImageStorage, scu_role=True, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    try:
        assert assoc.send_c_store(sent).Status == 0x0000
        web = make_web(dicom.pacs)
        doc = web.logged_in(web.user("doc"))
        assert "512.0 MiB" in refusal(viewer_frame(doc, frame_url(bomb)))
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = sent.StudyInstanceUID
        responses = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
        ae.shutdown()
    assert responses[-1][0].Status == 0x0000
    assert len(received) == 1
    assert_same_dataset(received[0], sent)
