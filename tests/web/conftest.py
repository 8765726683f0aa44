"""Fixtures of the DICOMweb tests: a web viewer per test on each backend, a physician, stored studies.

Lookups, ordering, auditing and the role checks touch the index, so they run on both backends
(the ``pacs`` fixture).
"""

from __future__ import annotations

import random
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from pacs.core.context import Context
from tests.data.make_series import make_ct_series, make_mr_series
from tests.web.dicomweb_helpers import Study, store_study
from tests.web.web_helpers import Browser, Web, make_web


@pytest.fixture
def web(pacs: Context) -> Web:
    return make_web(pacs)


@pytest.fixture
def doc(web: Web) -> Browser:
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
