"""Frame transfer: a large frame travels losslessly packed with a preview first; small frames raw.

The server side through Flask's test client; the packed body is unpacked here with numpy
(an implementation of its own, from the description in :mod:`webviewer.transfer`), and by
the viewer's own ``transfer.js`` in Node. The test in Chromium, against ``pacs serve`` over
real TLS, is in ``test_frame_transfer_browser.py``. Every large image is generated here
(:mod:`tests.web.large_frames`), never committed.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import REPO
from tests.web import dicomweb_helpers
from tests.web.dicomweb_helpers import ACCESSED, Stored, frame_url, store_one, store_study, viewer_frame
from tests.web.large_frames import CR_SPACING_MM, cr_pixels, write_image
from tests.web.web_helpers import Browser, Web
from webviewer.transfer import PACKED

TRANSFER_JS = REPO / "webviewer" / "static" / "viewer" / "transfer.js"
ACCEPT = {"Accept": f"{PACKED}, application/octet-stream;q=0.5"}
lite, reader = dicomweb_helpers.lite, dicomweb_helpers.reader  # the module's shared archive and physician
# 4 MP frames of the other sample formats (a 2000 x 2000 frame is exactly the threshold).
KINDS = ("uint8", "int16", "rgb8")


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]
    payload: bytes


def split_parts(body: bytes) -> list[Part]:
    """The parts of a packed body: 8-byte header (JSON and payload lengths), JSON, payload."""
    parts, offset = [], 0
    while True:
        described, length = struct.unpack_from(">II", body, offset)
        offset += 8
        headers = json.loads(body[offset : offset + described])
        offset += described
        end = len(body) if length == 0 else offset + length
        parts.append(Part(headers, body[offset:end]))
        offset = end
        if length == 0:
            assert offset == len(body)
            return parts


def unpack(part: Part) -> bytes:
    """The raw samples of a part: inflate, join the byte planes of each strip, unzigzag, add up the rows."""
    assert part.headers["X-Codec"] == "up-zigzag-planes-deflate"
    sample_format = part.headers["X-Sample-Format"]
    width = {"uint8": 1, "int8": 1, "rgb8": 1, "uint16": 2, "int16": 2, "float32": 4}[sample_format]
    rows, columns = int(part.headers["X-Rows"]), int(part.headers["X-Columns"])
    stride = columns * (3 if sample_format == "rgb8" else 1)
    strip_rows = int(part.headers["X-Strip-Rows"])
    coded = np.frombuffer(zlib.decompress(part.payload), dtype=np.uint8)
    assert coded.size == rows * stride * width
    unsigned = np.dtype(f"<u{width}")
    strips = []
    for first in range(0, rows, strip_rows):
        count = min(strip_rows, rows - first) * stride
        planes = coded[first * stride * width : first * stride * width + count * width].reshape(width, count)
        strips.append(np.ascontiguousarray(planes.T).view(unsigned).reshape(-1))
    zigzag = np.concatenate(strips)
    differences = (zigzag >> 1) ^ (0 - (zigzag & 1)).astype(unsigned)
    return np.cumsum(differences.reshape(rows, stride), axis=0, dtype=unsigned).tobytes()


def block_means(raw: np.ndarray, factor: int = 4) -> np.ndarray:
    """`raw` (rows x columns x channels) reduced by rounded means of `factor` x `factor` blocks."""
    rows, columns = raw.shape[0] // factor, raw.shape[1] // factor
    blocks = raw.reshape(rows, factor, columns, factor, -1).astype(np.int64)
    means = (blocks.sum(axis=(1, 3)) + factor * factor // 2) // (factor * factor)
    return means.astype(raw.dtype)


@pytest.fixture(scope="module")
def images(lite: Web, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Stored, Path]]:
    """The 3000 x 3000 CR (uint16) and 2000 x 2000 frames of :data:`KINDS`, stored."""
    root = tmp_path_factory.mktemp("large")
    grey = cr_pixels(2000, 2000, seed=1)
    arrays = {
        "uint16": cr_pixels(),
        "uint8": (grey >> 4).astype(np.uint8),
        "int16": (grey.astype(np.int16) - 2048),
        "rgb8": np.stack([grey >> 4, (grey >> 3) & 0xFF, 255 - (grey >> 4)], axis=-1).astype(np.uint8),
    }
    stored = {}
    for kind, pixels in arrays.items():
        path = write_image(root / f"{kind}.dcm", pixels)
        stored[kind] = (store_one(lite.pacs, path), path)
    return stored


def raw_frame(reader: Browser, stored: Stored) -> bytes:
    response = viewer_frame(reader, stored.frame_url(1))
    assert response.status_code == 200 and response.mimetype == "application/octet-stream"
    return response.data


def packed_parts(reader: Browser, stored: Stored) -> list[Part]:
    response = reader.client.get(stored.frame_url(1), headers=ACCEPT)
    assert response.status_code == 200, response.data[:200]
    assert response.mimetype == PACKED
    return split_parts(response.data)


# -- the server ------------------------------------------------------------------------------------


def test_a_large_frame_asked_for_packed_comes_as_a_preview_then_the_frame(
    reader: Browser, images: dict[str, tuple[Stored, Path]]
) -> None:
    preview, full = packed_parts(reader, images["uint16"][0])
    assert preview.headers["X-Preview-Of"] == "3000x3000"
    assert (preview.headers["X-Rows"], preview.headers["X-Columns"]) == ("750", "750")
    assert preview.headers["X-Pixel-Spacing"] == f"{CR_SPACING_MM * 4:g}\\{CR_SPACING_MM * 4:g}"
    assert "X-Preview-Of" not in full.headers
    assert (full.headers["X-Rows"], full.headers["X-Columns"]) == ("3000", "3000")
    assert full.headers["X-Pixel-Spacing"] == f"{CR_SPACING_MM:g}\\{CR_SPACING_MM:g}"


def test_the_packed_cr_is_the_raw_frame_in_well_under_half_the_bytes(
    reader: Browser, images: dict[str, tuple[Stored, Path]]
) -> None:
    stored, path = images["uint16"]
    raw = raw_frame(reader, stored)
    assert raw == pydicom.dcmread(path).pixel_array.astype("<u2").tobytes()
    preview, full = packed_parts(reader, stored)
    assert unpack(full) == raw
    assert len(raw) == 18_000_000
    assert len(full.payload) < 0.45 * len(raw)  # 2.6 times smaller as measured
    assert len(preview.payload) < 0.03 * len(raw)


@pytest.mark.parametrize("kind", ["uint16", *KINDS])
def test_packed_frames_and_previews_are_exactly_the_raw_samples_and_their_block_means(
    reader: Browser, images: dict[str, tuple[Stored, Path]], kind: str
) -> None:
    stored, _ = images[kind]
    raw = raw_frame(reader, stored)
    preview, full = packed_parts(reader, stored)
    assert full.headers["X-Sample-Format"] == kind
    assert unpack(full) == raw
    rows, columns = int(full.headers["X-Rows"]), int(full.headers["X-Columns"])
    dtype = np.dtype("uint8" if kind == "rgb8" else kind).newbyteorder("<")
    expected = block_means(np.frombuffer(raw, dtype=dtype).reshape(rows, columns, -1))
    assert unpack(preview) == expected.tobytes()


def test_a_preview_of_a_frame_not_a_multiple_of_four_spans_the_frame(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    pixels = cr_pixels(2001, 2003, seed=2)
    stored = store_one(lite.pacs, write_image(tmp_path / "odd.dcm", pixels))
    preview, full = packed_parts(reader, stored)
    assert (preview.headers["X-Rows"], preview.headers["X-Columns"]) == ("501", "501")
    row, column = map(float, preview.headers["X-Pixel-Spacing"].split("\\"))
    assert (row * 501, column * 501) == pytest.approx((CR_SPACING_MM * 2001, CR_SPACING_MM * 2003))
    assert unpack(full) == pixels.astype("<u2").tobytes()
    padded = np.pad(pixels, ((0, 3), (0, 1)), mode="edge")[..., None]
    assert unpack(preview) == block_means(padded).tobytes()


def test_a_large_frame_is_raw_unless_packed_is_asked_for(
    reader: Browser, images: dict[str, tuple[Stored, Path]]
) -> None:
    response = viewer_frame(reader, images["uint16"][0].frame_url(1))
    assert response.mimetype == "application/octet-stream"
    assert len(response.data) == 18_000_000
    assert "Accept" in response.headers["Vary"]


def test_a_frame_under_4_mp_stays_raw_when_packed_is_asked_for(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    pixels = cr_pixels(1999, 2000)  # 3,998,000 pixels
    stored = store_one(lite.pacs, write_image(tmp_path / "small.dcm", pixels))
    response = reader.client.get(stored.frame_url(1), headers=ACCEPT)
    assert response.mimetype == "application/octet-stream"
    assert response.data == pixels.astype("<u2").tobytes()
    assert response.headers["X-Rows"] == "1999"


def test_the_packed_body_is_cached_beside_the_decoded_frame(
    lite: Web, reader: Browser, images: dict[str, tuple[Stored, Path]]
) -> None:
    stored, _ = images["int16"]
    first = reader.client.get(stored.frame_url(1), headers=ACCEPT).data
    info = lite.pacs.archive.instance(stored.sop_uid)
    frames = lite.app.extensions["pacs"].frames
    assert frames.get((info.sop_uid, info.version, 1, PACKED)) == first
    assert reader.client.get(stored.frame_url(1), headers=ACCEPT).data == first


def test_a_packed_frame_alone_is_audited_as_the_study_viewed(lite: Web, tmp_path: Path) -> None:
    path = write_image(
        tmp_path / "audited.dcm", cr_pixels(2000, 2000, seed=3), patient=("AUDIT^ADA", "PID-A")
    )
    study = store_study(lite.pacs, [path])
    browser = lite.logged_in(lite.user("auditee"))
    response = browser.client.get(frame_url(study.uid, study.series_uid, study.sop(), 1), headers=ACCEPT)
    assert response.mimetype == PACKED
    assert [r.study_uid for r in lite.audit(ACCESSED, user="auditee")] == [study.uid]


# -- the viewer's decoder, in Node -----------------------------------------------------------------

NODE_DECODE = """
import { readFileSync, writeFileSync } from "node:fs";
import { readParts } from "%s";
const [body, previewOut, frameOut] = process.argv.slice(2);
const bytes = readFileSync(body);
const stream = new ReadableStream({
  start(controller) {
    for (let i = 0; i < bytes.length; i += 65536) {
      controller.enqueue(new Uint8Array(bytes.subarray(i, i + 65536)));
    }
    controller.close();
  },
});
let preview = null;
const frame = await readParts(stream.getReader(), (headers, buffer) => {
  preview = { rows: headers.get("X-Rows"), of: headers.get("X-Preview-Of") };
  writeFileSync(previewOut, new Uint8Array(buffer));
});
writeFileSync(frameOut, new Uint8Array(frame.buffer));
const format = frame.headers.get("X-Sample-Format");
console.log(JSON.stringify({ preview, rows: frame.headers.get("X-Rows"), format }));
"""


@pytest.mark.parametrize("kind", ["uint16", *KINDS])
def test_transfer_js_in_node_restores_exactly_the_raw_samples_and_the_preview(
    reader: Browser, images: dict[str, tuple[Stored, Path]], kind: str, tmp_path: Path
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is missing (scripts/dev-setup.sh installs nodejs)"
    stored, _ = images[kind]
    raw = raw_frame(reader, stored)
    response = reader.client.get(stored.frame_url(1), headers=ACCEPT)
    (tmp_path / "body").write_bytes(response.data)
    script = tmp_path / "decode.mjs"
    script.write_text(NODE_DECODE % TRANSFER_JS.as_uri())
    args = [node, str(script), str(tmp_path / "body"), str(tmp_path / "preview"), str(tmp_path / "frame")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    told = json.loads(result.stdout)
    preview = split_parts(response.data)[0]
    assert told["format"] == kind
    assert told["rows"] == response.headers["X-Rows"]
    assert told["preview"] == {
        "rows": preview.headers["X-Rows"],
        "of": f"{response.headers['X-Rows']}x{response.headers['X-Columns']}",
    }
    assert (tmp_path / "frame").read_bytes() == raw
    assert (tmp_path / "preview").read_bytes() == unpack(preview)
