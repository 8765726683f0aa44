"""Fixtures of the web tests: the web viewer in process, and Chromium on a live server.

DICOMweb: a web viewer per test on each backend, a physician, stored studies. Lookups,
ordering, auditing and the role checks touch the index, so they run on both backends (the
``pacs`` fixture).

Browser tests: a module defines a module-scoped ``live`` fixture (a running server, see
:mod:`tests.web.viewer_live`); ``browser`` is headless Chromium on it for the module, and
``page`` a watched page of a fresh context per test, ``page_size`` big (a module overrides
that fixture for another size).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from playwright.sync_api import Browser, Page
from pydicom.uid import generate_uid

from pacs.core.context import Context
from tests.data.make_series import make_ct_series, make_mr_series
from tests.web.dicomweb_helpers import Study, store_study
from tests.web.viewer_live import Live, chromium, watched_page
from tests.web.web_helpers import Browser as WebBrowser
from tests.web.web_helpers import Web, make_web


@pytest.fixture
def web(pacs: Context) -> Web:
    return make_web(pacs)


@pytest.fixture
def doc(web: Web) -> WebBrowser:
    """A physician, logged in."""
    return web.logged_in(web.user("doc"))


@pytest.fixture
def ct(web: Web, ct_dir: Path) -> Study:
    """The synthetic CT series of six slices (one series), stored."""
    return store_study(web.pacs, sorted(ct_dir.glob("*.dcm")))


@pytest.fixture(scope="module")
def mixed_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One study of three series, numbered 10 (12 slices), 3 (MR) and 2, in the order they are stored.

    Numbers compared as text would put 10 first, and instance 10 before 2.
    """
    root = tmp_path_factory.mktemp("mixed")
    study_uid = generate_uid()
    common = {"rows": 16, "columns": 16, "patient_name": "PANZA^TERESA", "patient_id": "PID-MIX"}
    long = make_ct_series(root / "long", slices=12, study_uid=study_uid, **common)
    for path in long:
        ds = pydicom.dcmread(path)
        ds.SeriesNumber = 10
        ds.save_as(path)
    random.Random(7).shuffle(long)
    mr = make_mr_series(root / "mr", slices=2, study_uid=study_uid, **common)
    short = make_ct_series(root / "short", slices=2, study_uid=study_uid, **common)
    return [*long, *mr, *short]


@pytest.fixture
def mixed(web: Web, mixed_files: list[Path]) -> Study:
    return store_study(web.pacs, mixed_files)


@pytest.fixture(scope="module")
def browser(live: Live[Any]) -> Iterator[Browser]:
    """Headless Chromium trusting the module's live archive (:func:`tests.web.viewer_live.chromium`)."""
    with chromium(live) as launched:
        yield launched


@pytest.fixture
def page_size() -> tuple[int, int]:
    """The width and height of :func:`page`'s viewport."""
    return 1280, 800


@pytest.fixture
def page(browser: Browser, live: Live[Any], page_size: tuple[int, int]) -> Iterator[Page]:
    """A page of a fresh context on `live`; console errors, page errors and CSP violations fail the test."""
    with watched_page(browser, live, *page_size) as opened:
        yield opened
