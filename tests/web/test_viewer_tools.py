"""The viewer's tools end to end: ``pacs serve`` over HTTPS and a real headless Chromium.

One archive for the module: a study with a CT, an MR, an ultrasound cine and an SR report.
Measurements are drawn with the mouse, and their numbers checked against the same geometry
computed here from the stored pixel data (pydicom). Each test opens the viewer as its own
reader; console errors, uncaught exceptions and CSP violations fail it. Screenshots are kept
under the test's temporary directory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from playwright.sync_api import Browser, Page, expect
from pydicom.uid import generate_uid

from pacs.core.context import Context
from tests.data.make_documents import REPORT_TITLE, make_measurement_report
from tests.data.make_series import make_ct_series, make_mr_series, make_us_cine
from tests.data.make_series.checks import Subject
from tests.web.browser import annotations, cell_point
from tests.web.viewer_live import Live, open_study, serve_archive, watched_page

PATIENT, PATIENT_ID = "TOOLS^TESSA", "E2E-TOOLS"
READERS = ["measurer", "roi", "lister", "typist", "presets", "desktop", "laptop", "tablet", "reader"]
CT_PRESETS = ["Soft tissue", "Lung", "Bone", "Brain"]
# Pixels of the annotation colour (#ffd84d) on the first viewport's overlay canvas.
NOTE_PIXELS = """
() => {
  const canvas = document.getElementById("overlay");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 200 && r > 230 && g > 190 && g < 240 && b < 120) n += 1;
  }
  return n;
}
"""


@dataclass(frozen=True)
class Seeded:
    study: str
    ct: str
    mr: str
    us: str
    sr: str
    files: dict[str, Path]  # SOP Instance UID -> file


def _seed(root: Path) -> Callable[[Context], Seeded]:
    def seed(pacs: Context) -> Seeded:
        study = generate_uid()
        who = {"patient_name": PATIENT, "patient_id": PATIENT_ID, "study_uid": study}
        ct = make_ct_series(root / "ct", slices=4, rows=128, columns=128, **who)
        mr = make_mr_series(root / "mr", slices=2, rows=64, columns=64, **who)
        for path in mr:
            ds = pydicom.dcmread(path)
            ds.SeriesNumber = 3
            ds.save_as(path)
        (us,) = make_us_cine(root / "us", frames=10, **who)
        ds = pydicom.dcmread(us)
        ds.SeriesNumber = 4
        ds.save_as(us)
        subject = Subject(PATIENT, PATIENT_ID, study, None, "20240115", "ACC0001", 0)
        sr = make_measurement_report(root / "sr.dcm", subject)
        files = {}
        for path in [*ct, *mr, us, sr]:
            files[pacs.archive.store(path).sop_uid] = path
        series = lambda path: str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)  # noqa: E731
        return Seeded(study, series(ct[0]), series(mr[0]), series(us), series(sr), files)

    return seed


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Seeded]]:
    root = tmp_path_factory.mktemp("tools")
    with serve_archive(root, _seed(root), READERS) as running:
        yield running


def _drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=6)
    page.mouse.up()


def _at(page: Page, fx: float, fy: float) -> tuple[float, float]:
    return cell_point(page, 0, fx, fy)


def _dataset(live: Live[Seeded], note: dict[str, Any]) -> pydicom.Dataset:
    """The stored object the note was drawn on (its slice key is series/SOP/frame)."""
    _, sop, _ = note["sliceKey"].split("/")
    return pydicom.dcmread(live.seeded.files[sop])


def _spacing(ds: pydicom.Dataset) -> tuple[float, float]:
    row, col = (float(v) for v in ds.PixelSpacing)
    return row, col


def _modality(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _wait_notes(page: Page, count: int) -> list[dict[str, Any]]:
    page.wait_for_function("(n) => viewerState.annotations.length === n", arg=count)
    return annotations(page)


def test_lengths_and_angles_are_kept_per_slice_and_measure_in_mm(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    open_study(page, live, "measurer", live.seeded.study)
    page.keyboard.press("l")
    expect(page.locator("#tool-length")).to_have_attribute("aria-pressed", "true")
    _drag(page, _at(page, 0.3, 0.4), _at(page, 0.62, 0.55))
    _drag(page, _at(page, 0.35, 0.7), _at(page, 0.5, 0.62))
    page.keyboard.press("a")
    _drag(page, _at(page, 0.42, 0.25), _at(page, 0.5, 0.45))  # the first arm, ending at the vertex
    page.mouse.click(*_at(page, 0.7, 0.4))  # the third point
    notes = _wait_notes(page, 3)
    assert [note["kind"] for note in notes] == ["length", "length", "angle"]  # a second length adds
    for note in notes:
        ds = _dataset(live, note)
        row, col = _spacing(ds)
        mm = [(p["x"] * col, p["y"] * row) for p in note["points"]]
        if note["kind"] == "length":
            assert note["labels"] == [f"{math.dist(mm[0], mm[1]):.1f} mm"]
        else:
            u = np.subtract(mm[0], mm[1])
            w = np.subtract(mm[2], mm[1])
            angle = math.degrees(math.acos(np.dot(u, w) / (np.linalg.norm(u) * np.linalg.norm(w))))
            assert note["labels"] == [f"{angle:.1f}°"]
    drawn = page.evaluate(NOTE_PIXELS)
    assert drawn > 100
    page.screenshot(path=str(tmp_path / "lengths-angle.png"))

    # The notes belong to their slice: gone from the next one, back on return.
    page.keyboard.press("ArrowDown")
    page.wait_for_function(
        "() => viewerState.index === 1 && viewerState.viewports[0].drawnKey.endsWith('/1')"
    )
    page.wait_for_function(f"() => ({NOTE_PIXELS})() === 0")
    page.keyboard.press("ArrowUp")
    page.wait_for_function(f"(n) => ({NOTE_PIXELS})() === n", arg=drawn)
    assert len(annotations(page)) == 3


def shown(value: float) -> str:
    """A number as the labels show it: one decimal, whole from 1000 up."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.1f}"


def _inside(kind: str, note: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside the ROI, as the viewer counts them."""
    a, b = note["points"]
    cx, cy = (a["x"] + b["x"]) / 2, (a["y"] + b["y"]) / 2
    rx, ry = abs(b["x"] - a["x"]) / 2, abs(b["y"] - a["y"]) / 2
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    if kind == "rect":
        return (np.abs(xs - cx) <= rx) & (np.abs(ys - cy) <= ry)
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def test_roi_statistics_and_the_probe_are_hounsfield_units_of_the_stored_pixels(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    open_study(page, live, "roi", live.seeded.study)
    page.keyboard.press("e")
    _drag(page, _at(page, 0.4, 0.55), _at(page, 0.58, 0.8))  # over the phantom's edge: varied values
    page.keyboard.press("r")
    _drag(page, _at(page, 0.3, 0.2), _at(page, 0.45, 0.35))
    for note in _wait_notes(page, 2):
        ds = _dataset(live, note)
        values = _modality(ds)[_inside(note["kind"], note, ds.pixel_array.shape)]
        stats = note["stats"]
        assert stats["n"] == values.size > 50
        for key, expected in (
            ("mean", values.mean()),
            ("sd", values.std()),
            ("min", values.min()),
            ("max", values.max()),
        ):
            assert stats[key] == pytest.approx(expected, abs=1e-6), key
        a, b = note["points"]
        row, col = _spacing(ds)
        w, h = abs(b["x"] - a["x"]) * col, abs(b["y"] - a["y"]) * row
        area = w * h if note["kind"] == "rect" else math.pi * w * h / 4
        assert stats["area"] == pytest.approx(area, rel=1e-12)
        assert note["labels"] == [
            f"Mean {shown(values.mean())} HU SD {shown(values.std())}",
            f"Min {shown(values.min())} Max {shown(values.max())}",
            f"Area {shown(area)} mm²",
        ]
    page.screenshot(path=str(tmp_path / "roi.png"))

    page.keyboard.press("v")
    page.mouse.move(*_at(page, 0.52, 0.47))
    probe = page.locator("#ov-probe")
    expect(probe).to_have_text(re.compile(r"^-?\d+ HU at \(\d+, \d+\)$"))
    value, x, y = (int(n) for n in re.findall(r"-?\d+", probe.inner_text()))
    ds = _dataset(live, annotations(page)[0])
    assert value == _modality(ds)[y, x]
    page.mouse.click(*_at(page, 0.52, 0.47))  # a click pins it
    pinned = _wait_notes(page, 3)[2]
    assert pinned["kind"] == "probe" and pinned["labels"] == [f"{value} HU"]
    page.screenshot(path=str(tmp_path / "probe.png"))


def test_notes_are_listed_selectable_and_deleted_by_key_or_button(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    open_study(page, live, "lister", live.seeded.study)
    page.keyboard.press("l")
    _drag(page, _at(page, 0.3, 0.3), _at(page, 0.6, 0.3))
    _drag(page, _at(page, 0.3, 0.6), _at(page, 0.6, 0.6))
    page.keyboard.press("ArrowDown")
    _drag(page, _at(page, 0.3, 0.45), _at(page, 0.6, 0.45))  # on the second slice
    _wait_notes(page, 3)
    page.keyboard.press("n")
    items = page.locator("#annotation-list li")
    expect(items).to_have_count(3)
    expect(items.nth(0)).to_contain_text("Length")
    expect(items.nth(0)).to_contain_text("image 1 of series 2")
    expect(items.nth(2)).to_contain_text("image 2 of series 2")
    page.screenshot(path=str(tmp_path / "notes-panel.png"))

    # A click on the first slice's note in the list selects it and goes back to its slice.
    items.nth(0).locator(".note-pick").click()
    page.wait_for_function("() => viewerState.index === 0 && viewerState.annotations[0].selected")
    page.locator("#viewport").focus()
    page.keyboard.press("Delete")
    notes = _wait_notes(page, 2)
    expect(items).to_have_count(2)
    # A click on a drawn note selects it (the W/L tool is active: no new note).
    page.keyboard.press("w")
    page.mouse.click(*_at(page, 0.45, 0.6))
    page.wait_for_function(
        "(id) => viewerState.annotations.find((n) => n.id === id).selected", arg=notes[0]["id"]
    )
    page.keyboard.press("Backspace")
    _wait_notes(page, 1)
    items.nth(0).locator(".note-delete").click()
    _wait_notes(page, 0)
    expect(items).to_have_count(0)


def test_every_tool_preset_layout_and_the_cine_have_a_key_and_the_help_lists_them(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    seeded = live.seeded
    open_study(page, live, "typist", seeded.study)
    for key, tool in {
        "z": "zoom",
        "p": "pan",
        "l": "length",
        "a": "angle",
        "e": "ellipse",
        "r": "rect",
        "v": "probe",
        "w": "wl",
    }.items():
        page.keyboard.press(key)
        expect(page.locator(f"#tool-{tool}")).to_have_attribute("aria-pressed", "true")

    page.keyboard.press("?")
    help_box = page.locator("#help")
    expect(help_box).to_be_visible()
    for text in (
        "Length tool",
        "Window: Lung",
        "Layout 2 \u00d7 2",
        "Play / pause cine",
        "Delete the selected",
    ):
        expect(help_box).to_contain_text(text)
    page.screenshot(path=str(tmp_path / "help.png"))
    page.keyboard.press("Escape")
    expect(help_box).to_be_hidden()

    labels = page.locator("#preset-items button").all_text_contents()
    lung = labels.index("Lung") + 1
    page.keyboard.press(str(lung))
    page.wait_for_function("() => viewerState.center === -600 && viewerState.width === 1500")
    page.keyboard.press("1")  # Default: the image's own
    page.wait_for_function("() => viewerState.center === 40 && viewerState.width === 400")

    page.keyboard.press("Shift+Digit2")
    expect(page.locator("#layout-1x2")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Shift+Digit3")
    expect(page.locator("#layout-2x1")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Shift+Digit1")
    expect(page.locator("#layout-1x1")).to_have_attribute("aria-pressed", "true")

    page.click(f'.series-thumb[data-series="{seeded.us}"]')
    page.wait_for_function(
        "(uid) => viewerState.seriesUid === uid && viewerState.total === 10", arg=seeded.us
    )
    page.locator("#viewport").focus()
    page.keyboard.press(" ")
    expect(page.locator("#cine")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press(" ")
    expect(page.locator("#cine")).to_have_attribute("aria-pressed", "false")


def _preset_labels(page: Page) -> list[str]:
    page.click("#preset-menu")
    labels = page.locator("#preset-items button").all_text_contents()
    page.click("#preset-menu")
    return labels


def test_ct_presets_are_offered_on_ct_only(page: Page, live: Live[Seeded]) -> None:
    seeded = live.seeded
    open_study(page, live, "presets", seeded.study)
    ct = _preset_labels(page)
    assert ct[0] == "Default" and "Auto" in ct and all(name in ct for name in CT_PRESETS), ct
    for series in (seeded.mr, seeded.us):
        page.click(f'.series-thumb[data-series="{series}"]')
        page.wait_for_function(
            "(uid) => { const [shown] = viewerState.viewports;"
            " return shown.seriesUid === uid && shown.drawnKey === shown.sliceKey; }",
            arg=series,
        )
        labels = _preset_labels(page)
        assert "Default" in labels and "Auto" in labels and not set(CT_PRESETS) & set(labels), (
            series,
            labels,
        )


TOOLBAR_ROW = """
() => {
  const bar = document.querySelector(".toolbar");
  const shown = [...bar.children].filter((child) => child.offsetParent !== null);
  // One row: every group's vertical centre on one line (a wrapped group sits a row lower).
  const centre = (box) => box.top + box.height / 2;
  const centres = shown.map((child) => centre(child.getBoundingClientRect()));
  const spread = Math.max(...centres) - Math.min(...centres);
  const height = bar.getBoundingClientRect().height;
  return { spread, overflow: bar.scrollWidth - bar.clientWidth, height };
}
"""


def test_the_toolbar_fits_1280_px_in_one_row_and_folds_into_menus_on_a_tablet(
    browser: Browser, live: Live[Seeded], tmp_path: Path
) -> None:
    seeded = live.seeded
    for reader, width, height in (("desktop", 1280, 800), ("laptop", 1180, 800), ("tablet", 768, 1024)):
        with watched_page(browser, live, width, height) as page:
            open_study(page, live, reader, seeded.study)
            row = page.evaluate(TOOLBAR_ROW)
            assert row["spread"] < 4 and row["overflow"] <= 0 and row["height"] < 48, (width, row)
            if width > 1100:
                expect(page.locator("#tool-length")).to_be_visible()
            else:
                expect(page.locator("#tool-length")).to_be_hidden()
                page.click(".menu.collapsible .menu-toggle >> nth=0")
                expect(page.locator("#tool-length")).to_be_visible()
                page.screenshot(path=str(tmp_path / f"toolbar-{width}-menu.png"))
                page.click("#tool-length")
                expect(page.locator("#tool-length")).to_be_hidden()
                expect(page.locator("#tool-menu-label")).to_have_text("Length")
            page.screenshot(path=str(tmp_path / f"toolbar-{width}.png"))


def test_a_report_shows_as_its_panel_in_the_viewport_without_fetching_frames(
    page: Page, live: Live[Seeded], tmp_path: Path
) -> None:
    seeded = live.seeded
    open_study(page, live, "reader", seeded.study)
    frames: list[str] = []
    page.on(
        "request",
        lambda request: (
            frames.append(request.url) if seeded.sr in request.url and "/frames/" in request.url else None
        ),
    )
    page.click(f'.series-thumb[data-series="{seeded.sr}"]')
    panel = page.locator('.cell[data-viewport="0"] .doc-view')
    expect(panel).to_be_visible()
    expect(panel).to_contain_text(REPORT_TITLE)
    page.screenshot(path=str(tmp_path / "report-panel.png"))
    assert frames == []
