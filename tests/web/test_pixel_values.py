"""Pixels as the doctor sees them: the browser's own frames.js and windowing.js on a live server's frames.

``pacs serve`` (HTTPS) holds pydicom's test files and pydicom-data's (each stored as a new
object); headless Chromium, logged in, imports the viewer's modules from the server, fetches
a frame, decodes it (``decodeFrame``) and paints it (``paint``) with the window the viewer
would use (or the one a test chooses), as the viewer's drawing code calls it. The 8-bit gray
values it paints are compared with pydicom's processing functions and with dcmtk's
rendering (tests/web/pixel_references.py), within 1 for rounding.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from data_store import DataStore
from playwright.sync_api import Browser, Page
from pydicom.data import get_testdata_file
from pydicom.data.data_manager import DATA_ROOT
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import generate_uid

from pacs.core.context import Context
from storage.errors import PacsError
from tests.web.browser import VIEWER_READY, log_in_reader
from tests.web.dicomweb_helpers import Stored, store_one
from tests.web.pixel_references import (
    dcmtk_gray,
    dcmtk_tool,
    inverted,
    lossy_tolerance,
    pydicom_gray,
    stored_values,
)
from tests.web.viewer_live import Live, serve_archive, watched_page

READER = "radiologist"
Samples = dict[str, tuple[Stored, Path]]  # what the live server holds by name: where, and the file stored
RENDER = """async ({ url, choice, overlays }) => {
  const { decodeFrame } = await import("/static/viewer/frames.js");
  const { paint } = await import("/static/viewer/windowing.js");
  const response = await fetch(url, { headers: { Accept: "application/octet-stream" } });  // viewer form
  if (!response.ok) return { status: response.status, text: await response.text() };
  const frame = decodeFrame(response.headers, await response.arrayBuffer());
  const levels = choice === null ? frame.window : typeof choice === "number" ? frame.windows[choice] : choice;
  const out = new Uint32Array(frame.rows * frame.cols);
  // As the viewer's draw.js calls it, the view not inverted: invert = MONOCHROME1.
  paint(frame, out, levels?.center, levels?.width, frame.photometric === "MONOCHROME1", { overlays });
  const rgba = new Uint8Array(out.buffer);
  const channels = frame.format === "rgb8" ? 3 : 1;
  const kept = new Uint8Array(out.length * channels);
  for (let p = 0; p < out.length; p += 1) {
    for (let c = 0; c < channels; c += 1) kept[p * channels + c] = rgba[4 * p + c];
  }
  let text = "";
  for (let i = 0; i < kept.length; i += 32768) text += String.fromCharCode(...kept.subarray(i, i + 32768));
  const { pixels, window, ...rest } = frame;
  return {
    status: response.status, pixels: btoa(text), channels,
    frame: {
      ...rest,
      window: window && { ...window, lut: Boolean(window.lut) },
      windows: frame.windows.map(({ lut, ...w }) => ({ ...w, lut: Boolean(lut) })),
      overlays: frame.overlays.length,
    },
  };
}"""


def _sample_paths() -> list[Path]:
    """pydicom's test files and pydicom-data's that hold pixel data."""
    own = sorted(Path(DATA_ROOT, "test_files").glob("*.dcm"))
    return own + sorted(Path(path) for path in DataStore().get_paths("*.dcm"))


def _compressed() -> list[Path]:
    """Every sample whose pixel data is compressed (encapsulated or deflated), first of its name.

    Left out: files without pixel data or meta information, and the truncated one the archive
    refuses to store (emri_small_jpeg_2k_lossless_too_short.dcm).
    """
    found: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _sample_paths():
            try:
                ds = pydicom.dcmread(path)
                syntax = ds.file_meta.TransferSyntaxUID
            except Exception:  # files without meta or unreadable on purpose: not images to show
                continue
            if (
                (syntax.is_encapsulated or syntax.is_deflated)
                and "PixelData" in ds
                and "too_short" not in path.name
            ):
                found.setdefault(path.name, path)
    return list(found.values())


COMPRESSED = _compressed()
# pydicom cannot decode it either (its codestream claims 14,540,801 tiles); the viewer refuses it (422).
# Samples the archive refuses to store (name -> why), filled when the server is seeded.
REFUSED: dict[str, str] = {}
# Its meta says explicit VR, its data set is implicit VR (dcmdump cannot read it either).
NOT_STORABLE = {"SC_rgb_jpeg.dcm"}
UNDECODABLE = {"JPEG2000-embedded-sequence-delimiter.dcm"}
SPECIAL = [
    "eCT_Supplemental.dcm",
    "vlut_04.dcm",
    "mlut_18.dcm",
    "examples_overlay.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "RG3_UNCR.dcm",
    "RG1_UNCR.dcm",
    "CT_small.dcm",
]


def _as_new_object(source: Path, target: Path, **changes: Any) -> Path:
    """`source` as an object of its own (new study, series and instance UIDs), with `changes`.

    A file pydicom cannot write back as it read it (explicit VR announced, implicit found) is
    stored as it is.
    """
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = ds.get("PatientID") or "PIXELS"
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    try:
        ds.save_as(target, enforce_file_format=True)
    except TypeError:  # an element whose VR pydicom could not tell
        return source
    return target


def _variants(root: Path) -> dict[str, Path]:
    """Objects made for a test: the Presentation LUT Shapes that disagree with the photometric default."""
    mr = Path(get_testdata_file("MR_small.dcm"))
    cr = Path(get_testdata_file("RG3_UNCR.dcm"))
    return {
        "mr-inverse": _as_new_object(mr, root / "mr-inverse.dcm", PresentationLUTShape="INVERSE"),
        "cr-identity": _as_new_object(cr, root / "cr-identity.dcm", PresentationLUTShape="IDENTITY"),
        "cr-inverse": _as_new_object(cr, root / "cr-inverse.dcm", PresentationLUTShape="INVERSE"),
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Samples]]:
    """The server, its ``seeded`` objects by name: (where to fetch them, the file stored)."""
    root = tmp_path_factory.mktemp("pixels")
    files = {path.name: path for path in COMPRESSED}
    files.update({name: Path(get_testdata_file(name)) for name in SPECIAL})

    def seed(pacs: Context) -> Samples:
        made = {name: _as_new_object(path, root / f"{i}.dcm") for i, (name, path) in enumerate(files.items())}
        made.update(_variants(root))
        stored: Samples = {}
        for name, path in made.items():
            try:
                stored[name] = (store_one(pacs, path), path)
            except PacsError as exc:  # the archive refuses it: the viewer never sees it
                REFUSED[name] = str(exc)
        return stored

    with serve_archive(root, seed, [READER]) as served:
        yield served


@pytest.fixture(scope="module")
def page(browser: Browser, live: Live[Samples]) -> Iterator[Page]:
    """One watched page for the module, logged in once (the tests fetch and paint in it)."""
    with watched_page(browser, live) as opened:
        log_in_reader(opened, live.readers[READER])
        yield opened


def shown(page: Page, live: Live[Samples], name: str, number: int = 1, **how: Any) -> dict[str, Any]:
    """Frame `number` of object `name` as the browser paints it; `choice` a window, `overlays` False."""
    stored = live.seeded
    arg = {
        "url": stored[name][0].frame_url(number),
        "choice": how.get("choice"),
        "overlays": how.get("overlays"),
    }
    result: dict[str, Any] = page.evaluate(RENDER, arg)
    assert result["status"] == 200, result
    frame = result["frame"]
    pixels = np.frombuffer(base64.b64decode(result["pixels"]), dtype=np.uint8)
    shape = (frame["rows"], frame["cols"], 3) if result["channels"] == 3 else (frame["rows"], frame["cols"])
    result["gray"] = pixels.reshape(shape)
    return result


def path_of(live: Live[Samples], name: str) -> Path:
    path: Path = live.seeded[name][1]
    return path


def assert_within(got: np.ndarray, expected: np.ndarray, what: str, tolerance: int = 1) -> None:
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    difference = np.abs(got.astype(np.int32) - expected.astype(np.int32))
    worst = int(difference.max())
    assert worst <= tolerance, (
        f"{what}: {int((difference > tolerance).sum())} pixels differ, by up to {worst}"
    )


def voi_of(window: dict[str, Any], index: int | None = None) -> dict[str, object]:
    """The reference's VOI for a window the browser reported (a VOI LUT is referred to by `index`)."""
    return {"lut": index} if window.get("lut") else {"center": window["center"], "width": window["width"]}


def dcmtk_window(window: dict[str, Any]) -> list[str]:
    return ["+Ww", repr(float(window["center"])), repr(float(window["width"]))]


def check(
    page: Page, live: Live[Samples], name: str, tmp_path: Path, number: int = 1, **how: Any
) -> dict[str, Any]:
    """Frame `number` of `name` painted by the browser equals pydicom's and (where it reads it) dcmtk's."""
    result = shown(page, live, name, number, **how)
    choice, frame = how.get("choice"), result["frame"]
    window = (
        frame["window"] if choice is None else frame["windows"][choice] if isinstance(choice, int) else choice
    )
    # The VOI LUTs come first in frame.windows, in the data set's order.
    lut_index = frame["windows"].index(window) if window.get("lut") else 0
    path, overlays = path_of(live, name), how.get("overlays") is not False
    assert_within(
        result["gray"], pydicom_gray(path, number, voi_of(window, lut_index), overlays), f"{name} pydicom"
    )
    if dcmtk_tool(path) is not None:
        options = ["+Wl", str(lut_index + 1)] if window.get("lut") else dcmtk_window(window)
        if not overlays:
            options.append("-O")
        rendered = dcmtk_gray(path, number, options, tmp_path / "dcmtk.pnm")
        tolerance = lossy_tolerance(path, window["width"], frame["slope"])
        assert_within(result["gray"], rendered, f"{name} dcmtk", tolerance)
    return result


# -- Enhanced (multi-frame) CT: the functional groups ---------------------------------------------


@pytest.mark.parametrize("number", [1, 2])
def test_enhanced_ct_shows_its_functional_groups_rescale_and_window_by_default(
    page: Page, live: Live[Samples], tmp_path: Path, number: int
) -> None:
    result = check(page, live, "eCT_Supplemental.dcm", tmp_path, number)
    frame = result["frame"]
    assert (frame["slope"], frame["intercept"]) == (1, -1024)
    assert frame["window"] == {"center": 49, "width": 102, "explanation": "", "lut": False}
    assert frame["windows"] == [{"center": 49, "width": 102, "explanation": "", "lut": False}]
    assert frame["spacing"] == {"row": 0.388672, "col": 0.388672}
    assert frame["orientation"] == [-1, 0, 0, 0, 1, 0]
    assert frame["thickness"] == 10
    assert frame["frameOfReference"] == "1.3.6.1.4.1.5962.1.4.10.1.1166562673.14401"


def test_enhanced_ct_frames_carry_their_own_plane_position(page: Page, live: Live[Samples]) -> None:
    ds = pydicom.dcmread(path_of(live, "eCT_Supplemental.dcm"), stop_before_pixels=True)
    for number in (1, 2):
        expected = [
            float(v)
            for v in ds.PerFrameFunctionalGroupsSequence[number - 1]
            .PlanePositionSequence[0]
            .ImagePositionPatient
        ]
        assert shown(page, live, "eCT_Supplemental.dcm", number)["frame"]["imagePosition"] == expected
    first, second = (shown(page, live, "eCT_Supplemental.dcm", n)["frame"]["imagePosition"] for n in (1, 2))
    assert first != second


def test_enhanced_ct_under_the_brain_window_shows_the_brain_gray_not_white(
    page: Page, live: Live[Samples], tmp_path: Path
) -> None:
    brain = {"center": 40, "width": 80}
    gray = check(page, live, "eCT_Supplemental.dcm", tmp_path, choice=brain)["gray"]
    inside = gray[192:320, 192:320]  # the middle of the head
    assert np.median(inside) < 200, f"median {np.median(inside)}: the brain is white"
    assert (inside == 255).mean() < 0.5


# -- MONOCHROME1 and the Presentation LUT Shape --------------------------------------------------


@pytest.mark.parametrize("name", ["RG3_UNCR.dcm", "RG1_UNCR.dcm", "RG3_J2KR.dcm", "RG1_J2KI.dcm"])
def test_monochrome1_shows_inverted_under_its_own_window(
    page: Page, live: Live[Samples], tmp_path: Path, name: str
) -> None:
    result = check(page, live, name, tmp_path)
    assert result["frame"]["photometric"] == "MONOCHROME1"
    assert result["frame"]["inverse"] is True


@pytest.mark.parametrize(
    ("name", "inverse"), [("mr-inverse", True), ("cr-identity", False), ("cr-inverse", True)]
)
def test_a_presentation_lut_shape_decides_the_polarity_as_in_dcmtk(
    page: Page, live: Live[Samples], tmp_path: Path, name: str, inverse: bool
) -> None:
    result = check(page, live, name, tmp_path)
    assert result["frame"]["inverse"] is inverse
    assert inverted(pydicom.dcmread(path_of(live, name), stop_before_pixels=True)) is inverse


# -- VOI LUT, Modality LUT, several windows --------------------------------------------------------


def test_a_voi_lut_is_the_default_and_shows_like_pydicom_apply_voi_and_dcmtk(
    page: Page, live: Live[Samples], tmp_path: Path
) -> None:
    result = check(page, live, "vlut_04.dcm", tmp_path)
    frame = result["frame"]
    assert frame["windows"][0]["lut"] is True
    assert frame["window"]["center"] == frame["windows"][0]["center"]
    assert frame["window"]["width"] == frame["windows"][0]["width"]


def test_a_window_dragged_away_from_the_voi_lut_is_a_linear_window(
    page: Page, live: Live[Samples], tmp_path: Path
) -> None:
    lut = shown(page, live, "vlut_04.dcm")
    linear = check(page, live, "vlut_04.dcm", tmp_path, choice={"center": 100, "width": 120})
    assert not np.array_equal(lut["gray"], linear["gray"])


def test_a_modality_lut_is_applied_before_the_window(page: Page, live: Live[Samples], tmp_path: Path) -> None:
    result = check(page, live, "mlut_18.dcm", tmp_path)
    assert (result["frame"]["slope"], result["frame"]["intercept"]) == (1, 0)
    assert result["frame"]["format"] == "uint16"


def test_every_window_of_the_data_set_is_offered_with_its_explanation(
    page: Page, live: Live[Samples], tmp_path: Path
) -> None:
    name = "MR-SIEMENS-DICOM-WithOverlays.dcm"
    frame = check(page, live, name, tmp_path, choice=1)["frame"]
    assert frame["windows"] == [
        {"center": 450, "width": 790, "explanation": "WINDOW1", "lut": False},
        {"center": 200, "width": 443, "explanation": "WINDOW2", "lut": False},
    ]


# -- overlays ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["examples_overlay.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"])
def test_overlay_planes_are_drawn_over_the_image(
    page: Page, live: Live[Samples], tmp_path: Path, name: str
) -> None:
    drawn = check(page, live, name, tmp_path)
    plain = check(page, live, name, tmp_path, overlays=False)
    assert drawn["frame"]["overlays"] == 1
    changed = drawn["gray"] != plain["gray"]
    assert changed.sum() > 100, "the overlay changed next to nothing"
    assert np.all(drawn["gray"][changed] == 255)


# -- an automatic window where the data set has none -----------------------------------------------


def test_without_a_window_the_default_is_the_1st_to_99th_percentile_of_the_values_but_padding(
    page: Page, live: Live[Samples], tmp_path: Path
) -> None:
    ds = pydicom.dcmread(path_of(live, "CT_small.dcm"))
    stored = ds.pixel_array
    kept = stored[stored != ds.PixelPaddingValue].astype(np.float64) * float(ds.RescaleSlope)
    kept += float(ds.RescaleIntercept)
    low, high = np.percentile(kept, 1, method="lower"), np.percentile(kept, 99, method="higher")
    frame = check(page, live, "CT_small.dcm", tmp_path)["frame"]
    assert frame["windows"] == []
    assert frame["window"] == {"center": (low + high) / 2 + 0.5, "width": high - low + 1, "lut": False}


# -- every compressed sample -------------------------------------------------------------------------


def _frames_to_check(path: Path) -> list[int]:
    frames = int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
    return sorted({1, frames})


def test_the_archive_refuses_only_the_malformed_sample(live: Live[Samples]) -> None:
    assert set(REFUSED) == NOT_STORABLE, REFUSED


@pytest.mark.parametrize(
    "source", [p for p in COMPRESSED if p.name not in UNDECODABLE | NOT_STORABLE], ids=lambda p: p.name
)
def test_every_compressed_sample_shows_as_pydicom_and_dcmtk_render_it(
    page: Page, live: Live[Samples], tmp_path: Path, source: Path
) -> None:
    name = source.name
    path = path_of(live, name)
    for number in _frames_to_check(path):
        result = shown(page, live, name, number)
        if result["channels"] == 1:
            check(page, live, name, tmp_path, number)
            continue
        ds = pydicom.dcmread(path)
        expected = stored_values(path, number)
        if ds.PhotometricInterpretation == "PALETTE COLOR":
            expected = apply_color_lut(expected, ds)
        palette = "RedPaletteColorLookupTableDescriptor" in ds
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2]) if palette else int(ds.BitsStored)
        assert_within(result["gray"], np.round(expected.astype(np.float64) * 255 / (2**bits - 1)), name)


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_a_sample_pydicom_cannot_decode_is_refused_not_shown(
    page: Page, live: Live[Samples], name: str
) -> None:
    with pytest.raises(Exception, match=r"(?i)decode"):
        pixel_array(pydicom.dcmread(path_of(live, name)))
    stored = live.seeded
    # Playwright's request context (the page's cookies): a 422 fetched by the page is a console error.
    assert page.request.get(stored[name][0].frame_url(1)).status == 422


# -- the viewer itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "window"),
    [("eCT_Supplemental.dcm", (49, 102)), ("MR-SIEMENS-DICOM-WithOverlays.dcm", (450, 790))],
)
def test_the_viewer_opens_with_the_data_set_s_window_and_draws_its_overlays(
    page: Page, live: Live[Samples], tmp_path: Path, name: str, window: tuple[int, int]
) -> None:
    stored: Stored = live.seeded[name][0]
    page.goto(f"/studies/{stored.study_uid}")
    page.wait_for_function(VIEWER_READY)
    page.wait_for_function("() => viewerState.center !== null")
    state = page.evaluate("() => ({ center: viewerState.center, width: viewerState.width })")
    assert (state["center"], state["width"]) == window
    shot = tmp_path / f"{Path(name).stem}.png"
    page.screenshot(path=shot)
    print(f"screenshot: {shot}")
