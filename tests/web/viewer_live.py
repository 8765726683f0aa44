"""The setup of every live-server browser test: ``pacs serve`` over HTTPS, its readers, and Chromium on it.

A browser test module defines one module-scoped fixture, ``live``, that enters
:func:`serve_archive` with what the module needs stored and the readers its tests log in as;
``tests/web/conftest.py`` builds the ``browser`` (module) and ``page`` (per test) fixtures on it.

- :func:`serve_archive` initialises a fresh data directory (SQLCipher index), lets `seed` store
  objects (and add accounts of its own), adds each reader as a physician who has enrolled TOTP
  and chosen a password, then starts a real ``pacs serve`` on free ports of 127.0.0.1 and waits
  for its banner. On leaving, the server is stopped with SIGTERM and must exit with status 0.
- :func:`chromium` launches headless Chromium trusting the archive's CA (its HOME holds the NSS
  database of :func:`tests.web.browser.trust_ca_for_chromium`; Playwright's own HTTP client,
  ``page.request``, is told to trust the same CA), so certificates are verified for real.
- :func:`watched_page` opens a page in a fresh browser context; :func:`new_context` and
  :func:`watched` are its two halves, for a module that keeps one logged-in context. Console
  errors, uncaught exceptions and Content-Security-Policy violations of a watched page are
  collected, and on leaving its block there must have been none.

Tests sharing a module's server stay independent of their order: they share the server and
Chromium, never a session. Each test logs in as a reader of its own (a TOTP code opens one
login only) and one that changes state uses its own user or study.
"""

from __future__ import annotations

import os
import select
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, sync_playwright

from pacs.core.accounts import Accounts
from pacs.core.context import CA_CERT, Context, initialise, open_pacs
from tests.conftest import _free_port, pacs_serve
from tests.web.browser import (
    CHROMIUM,
    CSP_WATCH,
    PHYSICIAN,
    TIMEOUT_MS,
    VIEWER_READY,
    Newcomer,
    Reader,
    log_in_reader,
    trust_ca_for_chromium,
)

PASSWORD = "copper otters guard the sluice"  # what an administrator gave a reader
NEW_PASSWORD = "nine quiet herons over marsh"  # what the reader chose instead
START_TIMEOUT = STOP_TIMEOUT = 60.0
T = TypeVar("T")


@dataclass
class Live(Generic[T]):
    """A running ``pacs serve``: where it is, the CA Chromium trusts, its readers and what `seed` returned."""

    base_url: str
    home: Path  # Chromium's HOME, whose NSS database trusts `ca`
    ca: Path
    readers: dict[str, Reader]
    seeded: T

    @property
    def port(self) -> int:
        port = urlsplit(self.base_url).port
        assert port is not None
        return port

    def tls(self) -> ssl.SSLContext:
        """A client context that verifies the server against the archive's CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def add_readers(pacs: Context, names: list[str], roles: frozenset[str] = PHYSICIAN) -> dict[str, Reader]:
    """Each of `names` as a user of `roles` who enrolled TOTP and changed the given password to their own."""
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    readers = {}
    for name in names:
        accounts.add(name, roles, PASSWORD)
        totp = pyotp.TOTP(accounts.begin_totp_enrolment(name))
        # The previous step confirms the enrolment: the current one stays usable for the login.
        assert accounts.confirm_totp(name, totp.at(time.time() - 30)) is not None
        accounts.change_password(name, NEW_PASSWORD)
        readers[name] = Reader(name, NEW_PASSWORD, totp)
    return readers


def add_newcomer(pacs: Context, name: str) -> Newcomer:
    """A physician just added by an administrator: a one-time password, no second factor yet."""
    _, password = Accounts(pacs.database, pacs.keyring, audit=pacs.audit).add(name, PHYSICIAN)
    return Newcomer(name, password)


def _stop(process: subprocess.Popen[str], log: Path) -> None:
    """SIGTERM; the server must exit with status 0 (it is killed if it has not within the timeout)."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        assert process.returncode == 0, f"pacs serve exited with {process.returncode}: {log.read_text()}"
    finally:
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def serve_archive(root: Path, seed: Callable[[Context], T], readers: list[str]) -> Iterator[Live[T]]:
    """``pacs serve`` of a new archive under `root`, once `seed` stored its objects and `readers` exist."""
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    pacs = open_pacs(settings)
    try:
        seeded = seed(pacs)
        added = add_readers(pacs, readers)
    finally:
        pacs.close()
    home, ca = root / "home", settings.tls_dir / CA_CERT
    trust_ca_for_chromium(home, ca)
    port, log = _free_port(), root / "serve.log"
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
        yield Live(f"https://localhost:{port}", home, ca, added, seeded)
    finally:
        _stop(process, log)


@contextmanager
def chromium(live: Live[Any]) -> Iterator[Browser]:
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
def new_context(
    browser: Browser, live: Live[Any], width: int = 1280, height: int = 800, *init_scripts: str
) -> Iterator[BrowserContext]:
    """A fresh context on `live`, `width` x `height`; its pages report CSP violations, run `init_scripts`."""
    context = browser.new_context(base_url=live.base_url, viewport={"width": width, "height": height})
    for script in (CSP_WATCH, *init_scripts):
        context.add_init_script(script)
    try:
        yield context
    finally:
        context.close()


@contextmanager
def watched(page: Page) -> Iterator[Page]:
    """`page`, closed on leaving; its console errors and uncaught exceptions fail the block.

    CSP violations are console errors (:data:`tests.web.browser.CSP_WATCH`). Nothing is asserted
    when the block itself raised: its own failure is the one to see.
    """
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error on {page.url}: {message.text}")

    def on_page_error(error: Error) -> None:
        problems.append(f"uncaught {error.name}: {error.message}")

    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    try:
        yield page
    finally:
        page.close()
    assert problems == [], "\n".join(problems)


@contextmanager
def watched_page(browser: Browser, live: Live[Any], width: int = 1280, height: int = 800) -> Iterator[Page]:
    """The watched page (:func:`watched`) of a fresh context (:func:`new_context`) on `live`."""
    with new_context(browser, live, width, height) as context, watched(context.new_page()) as page:
        yield page


def open_study(page: Page, live: Live[Any], reader: str, study_uid: str) -> None:
    """Log `reader` in and open the viewer of `study_uid` until its first image is shown."""
    log_in_reader(page, live.readers[reader])
    page.goto(f"/studies/{study_uid}")
    page.wait_for_function(VIEWER_READY)
