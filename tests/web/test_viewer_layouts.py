"""Layouts and comparison in the viewer, end to end: ``pacs serve`` over HTTPS and a real headless Chromium.

One archive for the module: DOE^JANE's current study (a thin and a thick axial CT and a
coronal localizer, all in one frame of reference), her prior study, and another patient.
Each test opens the viewer as its own reader; console errors, uncaught exceptions and CSP
violations fail it. Screenshots are kept under the test's temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import Page, expect
from pydicom.uid import generate_uid

from pacs.core.context import Context
from tests.data.make_series import make_ct_series
from tests.web.browser import cell_point, viewports, wait_until_fetched
from tests.web.viewer_live import Live, open_study, serve_archive

PATIENT, PATIENT_ID = "DOE^JANE", "E2E-JANE"
SIZE = 128
THIN, THICK = 1.25, 2.5  # slice spacing (mm) of the two axial series
THIN_SLICES, THICK_SLICES = 20, 10
LOCALIZER_TOP, LOCALIZER_ROW_MM = 31.75, 0.5  # z of the localizer's first row, and its row spacing
READERS = ["layout", "linker", "referee", "cornered"]
REFERENCE_AT_ROW = """
(row) => {
  const line = viewerState.viewports[1].reference;
  return line !== null && Math.abs(line.from.y - row) < 1e-6 && Math.abs(line.to.y - row) < 1e-6;
}
"""


@dataclass(frozen=True)
class Seeded:
    study: str
    prior: str
    prior_series: str
    thin: str
    thick: str
    localizer: str
    thin_z: list[float]
    thick_z: list[float]


def _edit(paths: list[Path], **attributes: object) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        ds.save_as(path)


def _axial(
    root: Path, slices: int, spacing: float, number: int, study: str, frame: str
) -> tuple[list[Path], list[float]]:
    """An axial series of `slices` `spacing` mm apart, centred on z = 0, in frame of reference `frame`."""
    files = make_ct_series(
        root,
        slices=slices,
        rows=SIZE,
        columns=SIZE,
        patient_name=PATIENT,
        patient_id=PATIENT_ID,
        study_uid=study,
        study_date="20240301",
    )
    top = (slices - 1) / 2 * spacing
    zs = [top - index * spacing for index in range(slices)]
    for path, z in zip(files, zs, strict=True):
        ds = pydicom.dcmread(path)
        ds.SeriesNumber, ds.SeriesDescription = number, f"AXIAL {spacing} MM"
        ds.FrameOfReferenceUID, ds.PatientSex = frame, "F"
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{spacing}"
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], f"{z}"]
        ds.SliceLocation = f"{z}"
        ds.save_as(path)
    return files, zs


def _localizer(axial: Path, root: Path) -> Path:
    """A coronal image in the axial series' frame of reference, its first row at z = LOCALIZER_TOP."""
    ds = pydicom.dcmread(axial)
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber = 3, "LOCALIZER", 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
    ds.ImagePositionPatient = [ds.ImagePositionPatient[0], "0", f"{LOCALIZER_TOP}"]
    ds.PixelSpacing = [f"{LOCALIZER_ROW_MM}", ds.PixelSpacing[1]]
    del ds.SliceLocation
    path = root / "localizer.dcm"
    ds.save_as(path)
    return path


def _seed(root: Path) -> Callable[[Context], Seeded]:
    def seed(pacs: Context) -> Seeded:
        study, frame = generate_uid(), generate_uid()
        thin, thin_z = _axial(root / "thin", THIN_SLICES, THIN, 1, study, frame)
        thick, thick_z = _axial(root / "thick", THICK_SLICES, THICK, 2, study, frame)
        localizer = _localizer(thin[0], root)
        prior = make_ct_series(
            root / "prior",
            slices=6,
            rows=64,
            columns=64,
            patient_name=PATIENT,
            patient_id=PATIENT_ID,
            study_date="20230110",
            accession="PRIOR01",
        )
        _edit(prior, StudyDescription="CT PRIOR", PatientSex="F")
        other = make_ct_series(
            root / "other", slices=2, rows=32, columns=32, patient_name="ROE^RICHARD", patient_id="E2E-ROE"
        )
        for path in [*thin, *thick, localizer, *prior, *other]:
            pacs.archive.store(path)
        uid = lambda path, keyword: str(pydicom.dcmread(path, stop_before_pixels=True)[keyword].value)  # noqa: E731
        return Seeded(
            study,
            uid(prior[0], "StudyInstanceUID"),
            uid(prior[0], "SeriesInstanceUID"),
            uid(thin[0], "SeriesInstanceUID"),
            uid(thick[0], "SeriesInstanceUID"),
            uid(localizer, "SeriesInstanceUID"),
            thin_z,
            thick_z,
        )

    return seed


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Seeded]]:
    root = tmp_path_factory.mktemp("layouts")
    with serve_archive(root, _seed(root), READERS) as running:
        yield running


def _drawn(page: Page, viewport: int, series: str) -> None:
    """Until viewport `viewport` shows a full frame of `series`."""
    page.wait_for_function(
        "([i, uid]) => { const v = viewerState.viewports[i];"
        " return v && v.seriesUid === uid && v.drawnKey !== null && v.drawnKey === v.sliceKey; }",
        arg=[viewport, series],
    )


def _show_in(page: Page, viewport: int, series: str) -> None:
    """Make viewport `viewport` active by clicking it, then pick `series` from the strip."""
    x, y = cell_point(page, viewport, 0.5, 0.5)
    page.mouse.click(x, y, button="middle")  # any button activates; the middle one (pan) moves nothing
    page.click(f'.series-thumb[data-series="{series}"]')
    _drawn(page, viewport, series)


def test_a_2x2_layout_shows_the_study_beside_the_patients_prior(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    seeded = live.seeded
    open_study(page, live, "layout", seeded.study)
    priors = page.locator("#priors .prior")
    expect(priors).to_have_count(1)  # her other study, not the other patient's
    expect(priors).to_contain_text("2023-01-10")
    expect(priors).to_contain_text("CT PRIOR")

    page.keyboard.press("Shift+Digit4")
    expect(page.locator("#layout-2x2")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".cell:not([hidden])")).to_have_count(4)
    for index, series in enumerate([seeded.thin, seeded.thick, seeded.localizer]):
        _drawn(page, index, series)  # the empty viewports got the study's other series

    page.click("#priors .prior-toggle")
    _show_in(page, 3, seeded.prior_series)
    shown = viewports(page)
    assert [v["studyUid"] for v in shown] == [seeded.study] * 3 + [seeded.prior]
    assert page.evaluate("() => viewerState.active") == 3
    fourth = page.locator('.cell[data-viewport="3"]')
    expect(fourth.locator(".corner.tr")).to_contain_text("2023-01-10 (prior)")
    expect(fourth.locator(".corner.tr")).to_contain_text("CT PRIOR")
    expect(page.locator('.cell[data-viewport="0"] .corner.tr')).not_to_contain_text("prior")

    # A thumbnail dragged onto a viewport shows there (the prior into the first one).
    page.drag_and_drop(f'.series-thumb[data-series="{seeded.prior_series}"]', '.cell[data-viewport="0"]')
    _drawn(page, 0, seeded.prior_series)
    page.screenshot(path=str(tmp_path / "layout-2x2-prior.png"))

    page.keyboard.press("Shift+Digit1")
    expect(page.locator(".cell:not([hidden])")).to_have_count(1)
    assert len(viewports(page)) == 1


def _nearest(zs: list[float], z: float) -> int:
    return min(range(len(zs)), key=lambda index: abs(zs[index] - z))


def test_linked_viewports_scroll_by_slice_position_and_share_the_window(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    seeded = live.seeded
    open_study(page, live, "linker", seeded.study)
    page.keyboard.press("Shift+Digit2")
    _drawn(page, 0, seeded.thin)
    _drawn(page, 1, seeded.thick)
    wait_until_fetched(page, THIN_SLICES + THICK_SLICES)  # every slice's position is known

    page.locator("#link").click()
    expect(page.locator("#link")).to_have_attribute("aria-pressed", "true")
    x, y = cell_point(page, 0, 0.5, 0.5)
    page.mouse.move(x, y)
    for step in range(1, 9):
        page.mouse.wheel(0, 100)
        page.wait_for_function("(n) => viewerState.viewports[0].index === n", arg=step)
        expected = _nearest(seeded.thick_z, seeded.thin_z[step])
        page.wait_for_function("(n) => viewerState.viewports[1].index === n", arg=expected)
    assert viewports(page)[1]["index"] == 4 != 8  # by position (z 1.875 -> 1.25), not by index

    # Window and zoom follow too.
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 30, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "() => { const [a, b] = viewerState.viewports;"
        " return a.center !== 40 && a.center === b.center && a.width === b.width; }"
    )
    before = viewports(page)[1]["scale"]
    page.keyboard.down("Control")
    page.mouse.wheel(0, -200)
    page.keyboard.up("Control")
    page.wait_for_function(
        "(before) => { const [a, b] = viewerState.viewports;"
        " return b.scale !== before && Math.abs(a.scale - b.scale) < 1e-9 * a.scale; }",
        arg=before,
    )
    page.screenshot(path=str(tmp_path / "linked.png"))

    page.keyboard.press("k")
    expect(page.locator("#link")).to_have_attribute("aria-pressed", "false")
    page.mouse.move(x, y)
    page.mouse.wheel(0, 100)
    page.wait_for_function("() => viewerState.viewports[0].index === 9")
    assert viewports(page)[1]["index"] == 4  # unlinked: the other viewport stays


def test_the_active_axial_slice_is_drawn_as_a_line_on_the_localizer(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    seeded = live.seeded
    open_study(page, live, "referee", seeded.study)
    page.keyboard.press("Shift+Digit2")
    _drawn(page, 1, seeded.thick)
    _show_in(page, 1, seeded.localizer)
    x, y = cell_point(page, 0, 0.5, 0.5)
    page.mouse.click(x, y, button="middle")  # the axial viewport is the active one
    for index in (0, 7):
        for _ in range(index):
            page.keyboard.press("ArrowDown")
        # The line lies on the localizer's row at the slice's z (rows step 0.5 mm down from z = 31.75).
        row = 0.5 + (LOCALIZER_TOP - seeded.thin_z[index]) / LOCALIZER_ROW_MM
        page.wait_for_function(REFERENCE_AT_ROW, arg=row)
    line = viewports(page)[1]["reference"]
    assert sorted([line["from"]["x"], line["to"]["x"]]) == [0, SIZE]  # the axial slice's full width
    assert viewports(page)[0]["reference"] is None  # none on the active viewport itself
    page.screenshot(path=str(tmp_path / "reference-line.png"))


def test_the_corners_show_orientation_sex_age_slice_location_and_thickness(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    seeded = live.seeded
    open_study(page, live, "cornered", seeded.study)
    first = page.locator('.cell[data-viewport="0"]')
    markers = {edge: first.locator(f".marker.{edge}") for edge in ("left", "right", "top", "bottom")}
    for edge, letter in {"left": "R", "right": "L", "top": "A", "bottom": "P"}.items():
        expect(markers[edge]).to_have_text(letter)
    expect(first.locator(".corner.tl")).to_contain_text("DOE, Jane")
    expect(first.locator(".corner.tl")).to_contain_text(f"ID {PATIENT_ID}")
    expect(first.locator(".corner.tl")).to_contain_text("F 54 y")
    expect(first.locator(".corner.bl")).to_contain_text(f"Loc {round(seeded.thin_z[0], 2)} mm")
    expect(first.locator(".corner.bl")).to_contain_text(f"Thick {THIN} mm")
    page.screenshot(path=str(tmp_path / "corners-axial.png"))

    page.click(f'.series-thumb[data-series="{seeded.localizer}"]')
    _drawn(page, 0, seeded.localizer)
    for edge, letter in {"left": "R", "right": "L", "top": "H", "bottom": "F"}.items():
        expect(markers[edge]).to_have_text(letter)
