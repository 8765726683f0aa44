"""WADO-RS frames: the stored values and how to show them.

Decoding does not touch the index: the pixel tests share one embedded SQLCipher archive and one
physician's login per module. Expected pixels always come from pydicom and its plugins reading the
original file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, pixel_array

from tests.conftest import SAMPLE_NAMES
from tests.data.make_series import make_us_cine
from tests.web import dicomweb_helpers
from tests.web.dicomweb_helpers import (
    _number,
    assert_rgb8,
    expected_frame,
    rewritten,
    samples,
    store_one,
    store_study,
    viewer_frame,
)
from tests.web.web_helpers import Browser, Web
from webviewer.pixels import Frame

lite, reader = dicomweb_helpers.lite, dicomweb_helpers.reader  # the module's shared archive and physician


# WADO-RS frames: the stored values and how to show them.


def test_ct_frame_is_the_stored_pixel_values(lite: Web, reader: Browser, ct_dir: Path) -> None:
    study = store_study(lite.pacs, sorted(ct_dir.glob("*.dcm")))
    response = viewer_frame(reader, study.frame_url(index=2))
    expected = pydicom.dcmread(study.path(2)).pixel_array
    got = samples(response)
    assert response.headers["X-Sample-Format"] == "int16"
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_ct_frame_headers_carry_rescale_window_and_spacing(lite: Web, reader: Browser, ct_dir: Path) -> None:
    study = store_study(lite.pacs, sorted(ct_dir.glob("*.dcm")))
    headers = viewer_frame(reader, study.frame_url(index=2)).headers
    ds = pydicom.dcmread(study.path(2))
    assert float(headers["X-Rescale-Slope"]) == float(ds.RescaleSlope)
    assert float(headers["X-Rescale-Intercept"]) == float(ds.RescaleIntercept)
    assert float(headers["X-Window-Center"]) == _number(ds.WindowCenter)
    assert float(headers["X-Window-Width"]) == _number(ds.WindowWidth)
    assert [float(v) for v in headers["X-Pixel-Spacing"].split("\\")] == [float(v) for v in ds.PixelSpacing]
    assert headers["X-Photometric"] == "MONOCHROME2"
    assert headers["X-Number-Of-Frames"] == "1"


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_frames_decode_like_pydicom(
    lite: Web, reader: Browser, sample_files: list[Path], name: str
) -> None:
    path = next(p for p in sample_files if p.name == name)
    stored = store_one(lite.pacs, path)
    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames") or 1)
    try:
        expected_frame(path, 1)
    except Exception:  # pydicom and its plugins cannot decode it either (JPEG-lossy.dcm)
        response = viewer_frame(reader, stored.frame_url(1))
        assert response.status_code == 422
        assert b"cannot be decoded" in response.data
        return
    for number in sorted({1, frames}):
        response = viewer_frame(reader, stored.frame_url(number))
        expected = expected_frame(path, number)
        got = samples(response)
        assert response.headers["X-Number-Of-Frames"] == str(frames)
        if expected.ndim == 3:
            assert response.headers["X-Sample-Format"] == "rgb8"
            assert_rgb8(got, expected, int(ds.BitsStored))
        else:
            assert response.headers["X-Sample-Format"] == expected.dtype.name
            assert np.array_equal(got, expected), f"frame {number}"


def test_monochrome1_is_reported_and_sent_uninverted(lite: Web, reader: Browser, tmp_path: Path) -> None:
    path = rewritten(
        Path(get_testdata_file("MR_small.dcm")),
        tmp_path / "mono1.dcm",
        PhotometricInterpretation="MONOCHROME1",
    )
    response = viewer_frame(reader, store_one(lite.pacs, path).frame_url(1))
    assert response.headers["X-Photometric"] == "MONOCHROME1"
    assert np.array_equal(samples(response), pydicom.dcmread(path).pixel_array)


def test_palette_colour_is_sent_as_rgb8_through_its_lookup_table(lite: Web, reader: Browser) -> None:
    path = Path(get_testdata_file("OBXXXX1A.dcm"))
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    response = viewer_frame(reader, store_one(lite.pacs, path).frame_url(1))
    assert response.headers["X-Sample-Format"] == "rgb8"
    assert response.headers["X-Photometric"] == "RGB"
    assert_rgb8(samples(response), apply_color_lut(ds.pixel_array, ds), bits)


def test_palette_colours_do_not_depend_on_the_brightest_pixel_of_the_frame(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    """A frame that uses only the dark half of the palette keeps its colours (no stretching)."""
    source = Path(get_testdata_file("OBXXXX1A.dcm"))
    dark = (pydicom.dcmread(source).pixel_array // 2).astype(np.uint8)
    path = rewritten(source, tmp_path / "dark.dcm", PixelData=dark.tobytes())
    ds = pydicom.dcmread(path)
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    response = viewer_frame(reader, store_one(lite.pacs, path).frame_url(1))
    assert_rgb8(samples(response), apply_color_lut(ds.pixel_array, ds), bits)


def test_16_bit_rgb_is_scaled_by_its_bit_depth_not_by_its_brightest_sample(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    source = Path(get_testdata_file("SC_rgb_16bit.dcm"))
    dim = pydicom.dcmread(source).pixel_array // 2
    path = rewritten(source, tmp_path / "dim.dcm", PixelData=dim.astype("<u2").tobytes())
    ds = pydicom.dcmread(path)
    response = viewer_frame(reader, store_one(lite.pacs, path).frame_url(1))
    assert response.headers["X-Sample-Format"] == "rgb8"
    assert_rgb8(samples(response), ds.pixel_array, int(ds.BitsStored))


@pytest.mark.parametrize("name", ["US1_J2KR.dcm", "SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm"])
def test_colour_samples_are_sent_as_rgb(lite: Web, reader: Browser, name: str) -> None:
    path = Path(get_testdata_file(name))
    response = viewer_frame(reader, store_one(lite.pacs, path).frame_url(1))
    assert response.headers["X-Photometric"] == "RGB"
    assert np.array_equal(samples(response), pixel_array(path))


def test_ultrasound_cine_frames_and_timing(lite: Web, reader: Browser, tmp_path: Path) -> None:
    path = make_us_cine(tmp_path, frames=6, rows=24, columns=32, frame_time_ms=40.0, seed=3)[0]
    assert not np.array_equal(expected_frame(path, 1), expected_frame(path, 6))
    stored = store_one(lite.pacs, path)
    for number in range(1, 7):
        response = viewer_frame(reader, stored.frame_url(number))
        assert response.headers["X-Number-Of-Frames"] == "6"
        assert float(response.headers["X-Frame-Time-Ms"]) == 40.0
        assert np.array_equal(samples(response), expected_frame(path, number)), f"frame {number}"


def test_frame_headers_carry_numbers_that_read_back_exactly() -> None:
    frame = Frame(
        samples=b"\0\0",
        sample_format="uint16",
        rows=1,
        columns=1,
        photometric="MONOCHROME2",
        frames=1,
        slope=0.000123456789,
        intercept=-1024.0,
        spacing=(2.734375, 0.1),
    )
    headers = frame.headers()
    assert headers["X-Pixel-Spacing"] == "2.734375\\0.1"
    assert headers["X-Rescale-Intercept"] == "-1024"
    assert float(headers["X-Rescale-Slope"]) == 0.000123456789
