"""The web viewer end to end: ``pacs serve`` over HTTPS, driven by a real headless Chromium.

One archive is served for the module (a 40-slice CT and a 20-frame ultrasound cine in
one study, and a decoy study); each test is one user's journey in a browser context of
its own. The server, Chromium and the watched pages are :mod:`tests.web.viewer_live`'s: Chromium
trusts the archive's own CA, so the server's certificate for "localhost" is verified for real;
certificate errors are not ignored.

Every page of every test is watched for console errors, uncaught exceptions and
Content-Security-Policy violations; any of them fails the test. Waits are on
conditions in the page (``wait_for_function``), never on sleeps, and no wall-clock time
is asserted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pydicom
import pyotp
import pytest
from playwright.sync_api import Page, Request, expect

from pacs.core.context import Context
from tests.conftest import REPO
from tests.data.make_series import make_ct_series, make_us_cine
from tests.web.browser import (
    CT_SLICES,
    US_FRAMES,
    VIEWER_READY,
    Served,
    canvas_stats,
    log_in,
    log_in_reader,
    open_viewer,
    viewer_state,
    viewport_centre,
    wait_for_canvas_change,
    wait_for_path,
    wait_until_idle,
)
from tests.web.viewer_live import NEW_PASSWORD, Live, add_newcomer, serve_archive

ARTIFACTS = REPO / "test-artifacts"
PATIENT = "ZEPHYRINE^CORA"
DECOY = "ALDERMAN^DECOY"
READERS = ["searcher", "leveller", "scroller", "leaver"]


def _make_data(root: Path) -> tuple[list[Path], str, str, str]:
    """The CT and the cine in one study (CT first by series number), and a decoy study."""
    ct = make_ct_series(
        root / "ct",
        slices=CT_SLICES,
        rows=256,
        columns=256,
        patient_name=PATIENT,
        patient_id="E2E-0001",
        accession="E2E0001",
    )
    first = pydicom.dcmread(ct[0], stop_before_pixels=True)
    study_uid, ct_series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    (us,) = make_us_cine(
        root / "us",
        frames=US_FRAMES,
        patient_name=PATIENT,
        patient_id="E2E-0001",
        accession="E2E0001",
        study_uid=study_uid,
    )
    cine = pydicom.dcmread(us)
    cine.SeriesNumber = 3  # after the CT's 2, so that the viewer opens the CT first
    cine.save_as(us)
    decoy = make_ct_series(
        root / "decoy", slices=2, rows=64, columns=64, patient_name=DECOY, patient_id="E2E-0002"
    )
    return [*ct, us, *decoy], study_uid, ct_series, str(cine.SeriesInstanceUID)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Served]]:
    """``pacs serve`` with the test data, a newcomer and the readers stored beforehand."""
    root = tmp_path_factory.mktemp("e2e")

    def seed(pacs: Context) -> Served:
        files, study_uid, ct_series, us_series = _make_data(root)
        for path in files:
            pacs.archive.store(path)
        newcomer = add_newcomer(pacs, "newcomer")
        return Served(study_uid, ct_series, us_series, newcomer.name, newcomer.password)

    with serve_archive(root, seed, READERS) as running:
        yield running


@pytest.fixture(scope="module")
def served(live: Live[Served]) -> Served:
    """What the scenarios know of the archive, its readers included."""
    return replace(live.seeded, readers=live.readers)


# -- the scenarios ---------------------------------------------------------------------------------


def test_first_login_enrols_totp_shows_recovery_codes_forces_a_new_password_then_logs_in_again(
    page: Page, served: Served
) -> None:
    page.goto("/")
    wait_for_path(page, "/login")
    page.fill("#username", served.newcomer)
    page.fill("#password", served.newcomer_password)
    page.click("#submit")
    wait_for_path(page, "/login/enrol")
    expect(page.locator("img.qr")).to_be_visible()
    key = page.locator("#totp-key").inner_text().replace(" ", "")
    totp = pyotp.TOTP(key)
    page.fill("#code", totp.now())
    page.click("#submit")

    codes = page.locator("#recovery-codes li")
    expect(codes).to_have_count(10)
    texts = [text.strip() for text in codes.all_inner_texts()]
    assert len(set(texts)) == 10 and all(texts), texts

    page.click("#continue")
    wait_for_path(page, "/account/password")
    page.fill("#new", NEW_PASSWORD)
    page.fill("#again", NEW_PASSWORD)
    page.click("#submit")
    wait_for_path(page, "/")
    expect(page.locator("h1")).to_have_text("Studies")
    expect(page.locator(f'#studies tr[data-study="{served.study_uid}"]')).to_be_visible()

    page.click("#logout")
    wait_for_path(page, "/login")
    expect(page.locator("#logout")).to_have_count(0)

    # The step after the enrolment's, which the server accepts as one step of drift: no waiting.
    log_in(page, served.newcomer, NEW_PASSWORD, lambda: totp.at(time.time() + 30))
    expect(page.locator(".who")).to_have_text(served.newcomer)


def test_search_by_name_prefix_opens_the_ct_and_shows_it(page: Page, served: Served) -> None:
    log_in_reader(page, served.readers["searcher"])
    rows = page.locator("#studies tbody tr[data-study]")
    expect(rows).to_have_count(2)

    page.fill('#search input[name="name"]', "zephyr")
    page.click('#search button[type="submit"]')
    page.wait_for_url(lambda url: "name=zephyr" in url)
    expect(rows).to_have_count(1)
    row = page.locator(f'#studies tr[data-study="{served.study_uid}"]')
    expect(row.locator("td.patient")).to_contain_text("ZEPHYRINE")
    expect(page.locator("#studies")).not_to_contain_text("ALDERMAN")

    row.locator("td.patient a").click()
    wait_for_path(page, served.study_path)
    page.wait_for_function(VIEWER_READY)
    state = viewer_state(page)
    assert state["seriesUid"] == served.ct_series
    assert state["total"] == CT_SLICES and state["index"] == 0
    expect(page.locator("#frame-label")).to_have_text(f"1 / {CT_SLICES}")
    expect(page.locator("#patient-name")).to_contain_text("ZEPHYRINE")

    stats = canvas_stats(page)
    assert stats["lit"] > 0.05 * stats["pixels"], stats
    assert stats["levels"] >= 32, stats

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer.png"))


def test_window_level_drag_changes_the_pixels_without_fetching_frames(page: Page, served: Served) -> None:
    log_in_reader(page, served.readers["leveller"])
    open_viewer(page, served)
    expect(page.locator("#tool-wl")).to_have_attribute("aria-pressed", "true")
    wait_until_idle(page)
    before = viewer_state(page)
    pixels_before = canvas_stats(page)
    fetched: list[str] = []

    def on_request(request: Request) -> None:
        if "/frames/" in request.url:
            fetched.append(request.url)

    page.on("request", on_request)
    x, y = viewport_centre(page)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y + 20, steps=5)
    during = wait_for_canvas_change(page, pixels_before["hash"])  # changes while the button is held
    page.mouse.move(x + 120, y + 60, steps=10)
    page.mouse.up()
    after = wait_for_canvas_change(page, during["hash"])
    page.remove_listener("request", on_request)

    state = viewer_state(page)
    assert (state["center"], state["width"]) != (before["center"], before["width"])
    assert state["frameRequests"] == before["frameRequests"]
    assert fetched == []
    assert state["index"] == before["index"] and state["seriesUid"] == served.ct_series
    assert after["lit"] > 0, after
    expect(page.locator("#ov-window")).not_to_have_text(f"C {before['center']} W {before['width']}")


def test_wheel_and_arrow_key_scroll_the_ct_and_the_cine_plays_and_pauses(page: Page, served: Served) -> None:
    log_in_reader(page, served.readers["scroller"])
    open_viewer(page, served)
    label = page.locator("#frame-label")
    expect(label).to_have_text(f"1 / {CT_SLICES}")
    first = canvas_stats(page)

    x, y = viewport_centre(page)
    page.mouse.move(x, y)
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => viewerState.index === 1")
    expect(label).to_have_text(f"2 / {CT_SLICES}")
    second = wait_for_canvas_change(page, first["hash"])

    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => viewerState.index === 2")
    expect(label).to_have_text(f"3 / {CT_SLICES}")
    wait_for_canvas_change(page, second["hash"])

    ct_shown = canvas_stats(page)
    page.click(f'.series-thumb[data-series="{served.us_series}"]')
    page.wait_for_function(
        "([uid, total]) => viewerState.seriesUid === uid && viewerState.total === total",
        arg=[served.us_series, US_FRAMES],
    )
    expect(page.locator(f'.series-thumb[data-series="{served.us_series}"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(label).to_have_text(f"1 / {US_FRAMES}")
    wait_for_canvas_change(page, ct_shown["hash"])

    cine = page.locator("#cine")
    expect(cine).to_be_enabled()
    cine.click()
    expect(cine).to_have_attribute("aria-pressed", "true")
    # The index moves by itself: at least five different frames are seen, polled every animation frame.
    page.wait_for_function(
        "(n) => { (window.seenFrames ??= new Set()).add(viewerState.index); return seenFrames.size >= n; }",
        arg=5,
        polling="raf",
    )
    cine.click()
    expect(cine).to_have_attribute("aria-pressed", "false")
    expect(cine).to_have_text("Play")
    paused_at = viewer_state(page)["index"]
    # Watch for ten frame intervals of the cine: a paused cine must not move.
    still = page.evaluate(
        """(interval) => new Promise((resolve) => {
             const start = performance.now();
             const indexes = new Set();
             const tick = (now) => {
               indexes.add(viewerState.index);
               if (now - start >= 10 * interval) resolve([...indexes]);
               else requestAnimationFrame(tick);
             };
             requestAnimationFrame(tick);
           })""",
        34,
    )
    assert still == [paused_at]
    expect(label).to_have_text(f"{paused_at + 1} / {US_FRAMES}")


def test_logout_ends_the_session_for_pages_and_api(page: Page, served: Served) -> None:
    log_in_reader(page, served.readers["leaver"])
    open_viewer(page, served)
    wait_until_idle(page)  # no prefetch left to be refused (and logged) once the session ends
    api = [
        f"/dicomweb/studies/{served.study_uid}/series",
        f"/dicomweb/studies/{served.study_uid}/series/{served.ct_series}/instances",
    ]
    for url in api:
        assert page.request.get(url, max_redirects=0).status == 200
    session_cookies = page.context.cookies()
    assert [cookie["name"] for cookie in session_cookies] == ["__Host-pacs"]

    page.click("#logout")
    wait_for_path(page, "/login")
    expect(page.locator("#username")).to_be_visible()

    # (Playwright starts Chromium with --disable-back-forward-cache: "back" reloads the page.)
    page.go_back()
    wait_for_path(page, "/login")
    expect(page.locator("#viewer")).to_have_count(0)
    page.goto(served.study_path)
    wait_for_path(page, "/login")
    expect(page.locator("#viewer")).to_have_count(0)

    for url in api:
        assert page.request.get(url, max_redirects=0).status == 401, url
    # The session ended on the server too: the cookie from before the logout opens nothing.
    page.context.clear_cookies()
    page.context.add_cookies(session_cookies)  # type: ignore[arg-type]
    for url in api:
        assert page.request.get(url, max_redirects=0).status == 401, url
    page.goto(served.study_path)
    wait_for_path(page, "/login")
