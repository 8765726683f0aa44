"""The forwarding pages in headless Chromium against ``pacs serve``: an admin who is also a physician sends a
study from its forward form and finds the job on the queue page, beside the rules of pacs.toml.

The destination is enrolled but down, so the sender in ``pacs serve`` tries the job and leaves it
pending with its reason and next try. Screenshots of the form and the queue are written under the
test's tmp path; every page is watched for console errors and CSP violations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pacs.core.context import Context
from pacs.ops.forward_queue import Attempt, ForwardQueue
from tests.conftest import _free_port
from tests.ops.forward_helpers import enrol_node
from tests.storage.study_files import Spec, write
from tests.web.browser import Reader, log_in_reader, wait_for_path
from tests.web.viewer_live import Live, add_readers, serve_archive

DOE = Spec("DOE^JANE", "PID-1001", "19700101", "F", "20240220", "143015", "ACC-2024-0042", "CT CHEST")
ROUTE = '\n[[route]]\nname = "ct-to-telerad"\nfrom_ae = "CT1"\nmodality = "CT"\nto = "TELERAD"\n'


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Reader]]:
    root = tmp_path_factory.mktemp("forwarding-browser")

    def seed(pacs: Context) -> Reader:
        pacs.archive.store(write(root / "in", DOE))
        for ae_title, port in (("TELERAD", _free_port()), ("OFFSITE", _free_port()), ("CT1", None)):
            enrol_node(pacs, ae_title, port)
        with (pacs.settings.data_dir / "pacs.toml").open("a") as config:
            config.write(ROUTE)
        queue = ForwardQueue(pacs.database)
        done = queue.enqueue("OFFSITE", DOE.study_uid, requested_by="route:ct-to-telerad")
        claimed = queue.claim()
        assert claimed is not None and claimed.id == done.id
        queue.finish(claimed, Attempt(1, 0, commitment="confirmed"))
        return add_readers(pacs, ["carer"], frozenset({"admin", "physician"}))["carer"]

    with serve_archive(root, seed, []) as served:
        yield served


@pytest.fixture
def page_size() -> tuple[int, int]:
    return 1280, 1000


def test_a_study_sent_from_its_forward_form_is_on_the_queue_with_the_rules(
    page: Page, live: Live[Reader], tmp_path: Path
) -> None:
    log_in_reader(page, live.seeded)
    page.goto(f"/admin/studies/{DOE.study_uid}")
    page.click("#forward")
    wait_for_path(page, f"/admin/studies/{DOE.study_uid}/forward")
    expect(page.locator("#study-summary")).to_contain_text("DOE^JANE")
    expect(page.locator("#to option")).to_have_count(3)  # "Choose", TELERAD, OFFSITE: CT1 has no port
    page.select_option("#to", "TELERAD")
    page.screenshot(path=str(tmp_path / "forward-form.png"), full_page=True)

    page.click("#confirm-forward")
    wait_for_path(page, "/admin/forwarding")
    expect(page.locator(".flash")).to_contain_text("queued for TELERAD as job 2")
    page.locator("#nav-forwarding").wait_for()
    deadline = time.monotonic() + 30
    row = page.locator('#pending-jobs tr[data-job="2"]')
    while "did not accept" not in row.inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(row).to_contain_text("TELERAD did not accept an association")
    expect(page.locator('#sent-jobs tr[data-job="1"]')).to_contain_text("confirmed")
    expect(page.locator('#routes tr[data-route="ct-to-telerad"]')).to_contain_text("CT1")
    page.screenshot(path=str(tmp_path / "forwarding-queue.png"), full_page=True)
