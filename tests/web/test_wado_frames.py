"""WADO-RS frames (PS3.18 10.4, 8.7.3): multipart/related, one part per frame asked for.

Native parts are compared with pydicom's decode of the original file, compressed parts with
the original's own fragments; the viewer's own form stays as it was for the viewer's Accept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import get_frame
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    generate_uid,
)

from tests.conftest import SAMPLE_NAMES
from tests.web import dicomweb_helpers
from tests.web.dicomweb_helpers import RAW, Stored, expected_frame, store_one
from tests.web.wado_helpers import OCTETS, VIEWER, little_endian, parts, url
from tests.web.web_helpers import Browser, Web

MULTIFRAME_RLE = "emri_small_RLE.dcm"  # 10 frames of 64 x 64, 16 bits
MULTIFRAME_J2K = "emri_small_jpeg_2k_lossless.dcm"
_LOSSY = {"JPEG-lossy.dcm", "JPGExtended.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "JPEG2000.dcm"}
lite, reader = dicomweb_helpers.lite, dicomweb_helpers.reader  # the module's shared archive and physician


def sample(lite: Web, name: str) -> tuple[Path, Stored]:
    """A pydicom test file stored under a SOP Instance UID of its own: several samples share one,
    and the archive keeps an object it already holds as a duplicate, whatever became current since."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = lite.pacs.settings.data_dir.parent / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path)
    return path, store_one(lite.pacs, path)


def frames_url(stored: Stored, frame_list: str) -> str:
    return url(stored.study_uid, stored.series_uid, stored.sop_uid, f"/frames/{frame_list}")


def fragments(path: Path, number: int) -> bytes:
    ds = pydicom.dcmread(path)
    return get_frame(ds.PixelData, number - 1, number_of_frames=int(ds.get("NumberOfFrames") or 1))


# Native frames: octet-stream, little endian, as pydicom decodes the original.


def test_frames_asked_as_multipart_octet_stream_come_as_multipart(
    lite: Web, reader: Browser, ct_dir: Path
) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[0]
    stored = store_one(lite.pacs, path)
    for headers in ({"Accept": OCTETS}, {}, {"Accept": "*/*"}):
        [part] = parts(
            reader.client.get(frames_url(stored, "1"), headers=headers), "application/octet-stream"
        )
        assert part.media_type == "application/octet-stream"
        assert part.params["transfer-syntax"] == ExplicitVRLittleEndian
        assert part.body == pydicom.dcmread(path).PixelData
        assert part.headers["content-location"] == frames_url(stored, "1")
        assert not any(name.lower().startswith("x-") for name in part.headers)


def test_a_frame_list_gives_one_native_part_per_frame_in_its_order(lite: Web, reader: Browser) -> None:
    path, stored = sample(lite, MULTIFRAME_RLE)
    got = parts(reader.client.get(frames_url(stored, "5,1,10")), "application/octet-stream")
    assert [part.body for part in got] == [little_endian(expected_frame(path, n)) for n in (5, 1, 10)]
    assert [part.headers["content-location"] for part in got] == [
        frames_url(stored, str(n)) for n in (5, 1, 10)
    ]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_sample_frame_asked_native_is_pydicoms_decode(lite: Web, reader: Browser, name: str) -> None:
    path, stored = sample(lite, name)
    accept = {"Accept": f"{OCTETS}; transfer-syntax={ImplicitVRLittleEndian}"}
    [part] = parts(reader.client.get(frames_url(stored, "1"), headers=accept), "application/octet-stream")
    assert part.params["transfer-syntax"] == ImplicitVRLittleEndian
    expected = expected_frame(path, 1)
    got = np.frombuffer(part.body, dtype=expected.dtype.newbyteorder("<")).reshape(expected.shape)
    if name in _LOSSY:  # libjpeg, GDCM and openjpeg may round a lossy stream's samples apart by one
        assert int(np.abs(got.astype(np.int64) - expected.astype(np.int64)).max()) <= 1
    else:
        assert np.array_equal(got, expected)


# The stored compressed bitstream, when the media type or transfer syntax asked is the stored one.


def test_compressed_frames_asked_in_their_media_type_are_the_stored_fragments(
    lite: Web, reader: Browser
) -> None:
    path, stored = sample(lite, MULTIFRAME_J2K)
    for accept in ('multipart/related; type="image/jp2"', f"{OCTETS}; transfer-syntax=*", "image/jp2"):
        got = parts(reader.client.get(frames_url(stored, "2,9"), headers={"Accept": accept}), "image/jp2")
        assert [part.body for part in got] == [fragments(path, 2), fragments(path, 9)], accept
        assert all(part.params["transfer-syntax"] == JPEG2000Lossless for part in got)


def test_the_stored_syntax_named_gives_the_stored_bitstream(lite: Web, reader: Browser) -> None:
    path, stored = sample(lite, "MR_small_jpeg_ls_lossless.dcm")
    accept = {"Accept": f'multipart/related; type="image/jls"; transfer-syntax={JPEGLSLossless}'}
    [part] = parts(reader.client.get(frames_url(stored, "1"), headers=accept), "image/jls")
    assert part.body == fragments(path, 1)


def test_the_first_acceptable_item_by_q_decides(lite: Web, reader: Browser) -> None:
    _, stored = sample(lite, MULTIFRAME_J2K)
    items = (
        'multipart/related; type="image/jpeg"',
        f"{OCTETS};q=0.2",
        'multipart/related; type="image/jp2";q=0.5',
    )
    accept = {"Accept": ", ".join(items)}
    [part] = parts(reader.client.get(frames_url(stored, "1"), headers=accept), "image/jp2")
    assert UID(part.params["transfer-syntax"]) == JPEG2000Lossless


# Refusals.


def test_what_cannot_be_produced_is_406_and_bad_numbers_404_or_400(
    lite: Web, reader: Browser, ct_dir: Path
) -> None:
    _, j2k = sample(lite, MULTIFRAME_J2K)
    ct = store_one(lite.pacs, sorted(ct_dir.glob("*.dcm"))[2])
    for stored, accept in (
        (ct, 'multipart/related; type="image/jpeg"'),
        (j2k, f"{OCTETS}; transfer-syntax={JPEGLSLossless}"),
        (j2k, 'multipart/related; type="image/jls"'),
        (j2k, "text/html"),
    ):
        assert reader.client.get(frames_url(stored, "1"), headers={"Accept": accept}).status_code == 406, (
            accept
        )
    assert reader.get(frames_url(j2k, "11")).status_code == 404
    assert reader.get(frames_url(j2k, "1,11")).status_code == 404
    assert reader.get(frames_url(j2k, "0")).status_code == 404
    for malformed in ("1,,3", "a", "1-3", "1,"):
        assert reader.get(frames_url(j2k, malformed)).status_code == 400, malformed


# The viewer's own form.


def test_the_viewers_accept_still_gets_the_viewers_form(lite: Web, reader: Browser) -> None:
    _, stored = sample(lite, MULTIFRAME_RLE)
    for headers in (VIEWER, RAW):
        response = reader.client.get(frames_url(stored, "3"), headers=headers)
        assert response.status_code == 200 and response.mimetype == "application/octet-stream"
        assert response.headers["X-Sample-Format"] == "uint16"
    assert reader.client.get(frames_url(stored, "1,2"), headers=VIEWER).status_code == 406
