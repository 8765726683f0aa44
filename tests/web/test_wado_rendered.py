"""WADO-RS rendered images and thumbnails (PS3.18 10.4.1.1.3): JPEG or PNG, windowed as asked.

Expected images are computed here from pydicom's decode of the original and PS3.3
C.11.2.1.2's window functions (written again here, not taken from the server); PNG answers
must match them exactly, JPEG answers closely.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.web import dicomweb_helpers
from tests.web.dicomweb_helpers import ACCESSED, Stored, Study, rewritten, store_one, store_study
from tests.web.wado_helpers import parts, url
from tests.web.web_helpers import Browser, Web

PNG = {"Accept": "image/png"}
lite, reader = dicomweb_helpers.lite, dicomweb_helpers.reader  # the module's shared archive and physician


@pytest.fixture(scope="module")
def series(lite: Web, ct_dir: Path) -> Study:
    return store_study(lite.pacs, sorted(ct_dir.glob("*.dcm")))


def windowed(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT) and C.11.2.1.3.1 (SIGMOID), to 0..255."""
    if function == "SIGMOID":
        out = 255 / (1 + np.exp(-4 * (values - center) / width))
    elif function == "LINEAR_EXACT":
        out = np.select(
            [values <= center - width / 2, values > center + width / 2],
            [0.0, 255.0],
            ((values - center) / width + 0.5) * 255,
        )
    else:
        out = np.select(
            [values <= center - 0.5 - (width - 1) / 2, values > center - 0.5 + (width - 1) / 2],
            [0.0, 255.0],
            ((values - (center - 0.5)) / (width - 1) + 0.5) * 255,
        )
    return np.round(out).astype(np.uint8)


def modality_values(path: Path, frame: int | None = None) -> np.ndarray:
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array if frame is None else ds.pixel_array[frame - 1]
    return stored * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


def image(response: object) -> np.ndarray:
    assert response.status_code == 200, (response.status_code, response.data[:200])
    return np.asarray(Image.open(io.BytesIO(response.data)))


def instance_url(stored: Stored, tail: str) -> str:
    return url(stored.study_uid, stored.series_uid, stored.sop_uid, tail)


# The image and its window.


def test_an_instance_renders_as_jpeg_under_its_own_window(reader: Browser, series: Study) -> None:
    response = reader.get(url(series.uid, series.series_uid, series.sop(2), "/rendered"))
    assert response.mimetype == "image/jpeg" and response.data[:3] == b"\xff\xd8\xff"
    got = image(response).astype(np.int16)
    expected = windowed(modality_values(series.path(2)), 40, 400).astype(np.int16)
    assert got.shape == expected.shape == (64, 64)
    assert float(np.abs(got - expected).mean()) < 3


def test_png_is_exactly_the_window_asked_for_in_each_function(reader: Browser, series: Study) -> None:
    target = url(series.uid, series.series_uid, series.sop(3), "/rendered")
    values = modality_values(series.path(3))
    for function in ("linear", "linear_exact", "sigmoid"):
        response = reader.client.get(f"{target}?window=100,700,{function}", headers=PNG)
        assert response.mimetype == "image/png"
        assert np.array_equal(image(response), windowed(values, 100, 700, function.upper())), function


def test_a_frame_of_a_multiframe_object_renders_on_its_own(lite: Web, reader: Browser) -> None:
    path = Path(get_testdata_file("emri_small_RLE.dcm"))
    stored = store_one(lite.pacs, path)
    got = image(reader.client.get(instance_url(stored, "/frames/7/rendered?window=600,1200"), headers=PNG))
    assert np.array_equal(got, windowed(modality_values(path, 7), 600, 1200))


def test_monochrome1_renders_inverted(lite: Web, reader: Browser, series: Study, tmp_path: Path) -> None:
    changes = {"PhotometricInterpretation": "MONOCHROME1", "SeriesInstanceUID": generate_uid()}
    inverted = store_one(lite.pacs, rewritten(series.path(1), tmp_path / "m1.dcm", **changes))
    got = image(reader.client.get(instance_url(inverted, "/rendered?window=40,400"), headers=PNG))
    assert np.array_equal(got, 255 - windowed(modality_values(series.path(1)), 40, 400))


def test_a_colour_image_renders_in_colour(lite: Web, reader: Browser) -> None:
    path = Path(get_testdata_file("SC_rgb.dcm"))
    got = image(reader.client.get(instance_url(store_one(lite.pacs, path), "/rendered"), headers=PNG))
    assert np.array_equal(got, pydicom.dcmread(path).pixel_array)


# Size: viewport and thumbnails.


def test_the_viewport_scales_the_image_to_fit_keeping_its_proportions(lite: Web, reader: Browser) -> None:
    stored = store_one(lite.pacs, Path(get_testdata_file("JPEG2000.dcm")))  # 1024 rows x 256 columns
    assert image(reader.get(instance_url(stored, "/rendered?viewport=100,100"))).shape == (100, 25)
    assert image(reader.get(instance_url(stored, "/rendered"))).shape == (1024, 256)
    assert image(reader.get(instance_url(stored, "/thumbnail"))).shape == (128, 32)


def test_series_and_study_thumbnails_show_the_middle_image(reader: Browser, series: Study) -> None:
    middle = windowed(modality_values(series.path(3)), 40, 400)
    for target in (url(series.uid, series.series_uid, tail="/thumbnail"), url(series.uid, tail="/thumbnail")):
        got = image(reader.client.get(f"{target}?viewport=64,64", headers=PNG))
        assert np.array_equal(got, middle), target


def test_a_series_renders_as_one_image_part_per_instance(reader: Browser, series: Study) -> None:
    response = reader.client.get(url(series.uid, series.series_uid, tail="/rendered"), headers=PNG)
    got = parts(response, "image/png")
    assert len(got) == 6
    for index, part in enumerate(got):
        assert part.headers["content-location"] == url(series.uid, series.series_uid, series.sop(index))
        expected = windowed(modality_values(series.path(index)), 40, 400)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(part.body))), expected)


# Refusals, and the audit.


def test_malformed_parameters_are_400_and_other_image_types_406(reader: Browser, series: Study) -> None:
    target = url(series.uid, series.series_uid, series.sop(), "/rendered")
    for query in (
        "window=abc",
        "window=40,0",
        "window=40,400,cubic",
        "viewport=0,10",
        "viewport=a",
        "quality=0",
    ):
        response = reader.get(f"{target}?{query}")
        assert response.status_code == 400 and response.mimetype == "text/plain", query
    assert reader.client.get(target, headers={"Accept": "image/gif"}).status_code == 406
    assert (
        reader.get(url(series.uid, series.series_uid, series.sop(), "/frames/2/rendered")).status_code == 404
    )


def test_a_rendered_image_is_audited_as_the_study_accessed(web: Web, doc: Browser, ct: Study) -> None:
    for tail in ("/rendered", "/thumbnail"):
        assert doc.get(url(ct.uid, ct.series_uid, ct.sop(), tail)).status_code == 200
    assert doc.get(url(ct.uid, tail="/thumbnail")).status_code == 200
    assert [r.study_uid for r in web.audit(ACCESSED, user="doc")] == [ct.uid]
