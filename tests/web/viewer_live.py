"""Helpers of the viewer's browser tests: ``pacs serve`` with given objects and readers, and Chromium.

`serve_archive` starts a real server (HTTPS) on free ports with the objects `seed` puts in
the archive beforehand and physicians who have enrolled TOTP; :func:`chromium` launches
headless Chromium trusting the archive's CA; :func:`watched_page` opens a page in a fresh
context of a given size whose console errors, uncaught exceptions and CSP violations are
collected (the tests assert there are none).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from pacs.core.accounts import Accounts
from pacs.core.context import CA_CERT, Context, initialise, open_pacs
from tests.conftest import _free_port, pacs_serve
from tests.web.browser import (
    CHROMIUM,
    CSP_WATCH,
    PHYSICIAN,
    TIMEOUT_MS,
    VIEWER_READY,
    Reader,
    log_in_reader,
    trust_ca_for_chromium,
)

PASSWORD = "copper otters guard the sluice"
NEW_PASSWORD = "nine quiet herons over marsh"
START_TIMEOUT = 60.0


@dataclass
class Live:
    """A running ``pacs serve``: where it is, whom Chromium trusts, its readers and what the seed returned."""

    base_url: str
    home: Path
    ca: Path
    readers: dict[str, Reader]
    seeded: Any
    problems: list[str] = field(default_factory=list)


def _add_readers(pacs: Context, names: list[str]) -> dict[str, Reader]:
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    readers = {}
    for name in names:
        accounts.add(name, PHYSICIAN, PASSWORD)
        totp = pyotp.TOTP(accounts.begin_totp_enrolment(name))
        # The previous step confirms the enrolment: the current one stays usable for the login.
        assert accounts.confirm_totp(name, totp.at(time.time() - 30)) is not None
        accounts.change_password(name, NEW_PASSWORD)
        readers[name] = Reader(name, NEW_PASSWORD, totp)
    return readers


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def serve_archive(root: Path, seed: Callable[[Context], Any], readers: list[str]) -> Iterator[Live]:
    """``pacs serve`` on free ports of 127.0.0.1 after `seed` stored its objects and `readers` were added."""
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    pacs = open_pacs(settings)
    try:
        seeded = seed(pacs)
        added = _add_readers(pacs, readers)
    finally:
        pacs.close()
    home = root / "home"
    trust_ca_for_chromium(home, settings.tls_dir / CA_CERT)
    port = _free_port()
    log = root / "serve.log"
    process = pacs_serve(
        settings.data_dir,
        log,
        PACS_DICOM_PORT=str(_free_port()),
        PACS_DICOM_WORKERS="1",
        PACS_WEB_PORT=str(port),
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        banner = process.stdout.readline() if ready else ""
        assert "web viewer on https://" in banner, (banner, log.read_text())
        yield Live(f"https://localhost:{port}", home, settings.tls_dir / CA_CERT, added, seeded)
    finally:
        _stop(process)


@contextmanager
def chromium(live: Live) -> Iterator[Browser]:
    """Headless Chromium whose HOME trusts the archive's CA (Playwright's own client too)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NODE_EXTRA_CA_CERTS", str(live.ca))
        playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, env={**os.environ, "HOME": str(live.home)}
        )
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


@contextmanager
def watched_page(browser: Browser, live: Live, width: int = 1280, height: int = 800) -> Iterator[Page]:
    """A fresh context's page, `width` x `height`; console errors and CSP violations go to `live.problems`."""
    context = browser.new_context(base_url=live.base_url, viewport={"width": width, "height": height})
    context.add_init_script(CSP_WATCH)
    live.problems.clear()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            live.problems.append(f"console error: {message.text}")

    def on_page_error(error: Error) -> None:
        live.problems.append(f"uncaught {error.name}: {error.message}")

    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    opened.on("console", on_console)
    opened.on("pageerror", on_page_error)
    try:
        yield opened
    finally:
        context.close()


def open_study(page: Page, live: Live, reader: str, study_uid: str) -> None:
    """Log `reader` in and open the viewer of `study_uid` until its first image is shown."""
    log_in_reader(page, live.readers[reader])
    page.goto(f"/studies/{study_uid}")
    page.wait_for_function(VIEWER_READY)


def viewports(page: Page) -> list[dict[str, Any]]:
    """window.viewerState.viewports: what each shown viewport shows."""
    shown: list[dict[str, Any]] = page.evaluate("() => viewerState.viewports.map((v) => ({ ...v }))")
    return shown


def annotations(page: Page) -> list[dict[str, Any]]:
    """window.viewerState.annotations: every note of the study."""
    notes: list[dict[str, Any]] = page.evaluate("() => viewerState.annotations.map((n) => ({ ...n }))")
    return notes


def cell_point(page: Page, viewport: int, fx: float, fy: float) -> tuple[float, float]:
    """The page point at fractions (`fx`, `fy`) of viewport `viewport`'s box."""
    box = page.locator(f'.cell[data-viewport="{viewport}"]').bounding_box()
    assert box is not None
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def wait_until_fetched(page: Page, frames: int) -> None:
    """Until at least `frames` frames were requested and none is in flight."""
    page.wait_for_function("(n) => viewerState.inFlight === 0 && viewerState.frameRequests >= n", arg=frames)
