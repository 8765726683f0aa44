"""The admin pages and error pages in headless Chromium against ``pacs serve``, with screenshots.

The audit log (filtered, and its default page of 50 records kept compact: one line a record,
the JSON opened by its toggle without script), the Status page with a real finding (a plaintext
node), a 403 and a 404 in the app's layout, and ``/`` for an admin. Screenshots go under the
test's tmp path; no page may break the CSP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from pacs.core import pki
from pacs.core.audit import Action, AuditEvent, EventID, EventType, Outcome
from pacs.core.context import CA_CERT, CA_KEY, Context
from pacs.core.nodes import NodeRegistry
from tests.web.browser import TIMEOUT_MS, Reader, wait_for_path
from tests.web.viewer_live import Live, add_readers, new_context, serve_archive

ADMINS = ("boss", "chief")
PHYSICIAN_READER = "doc"


def _add_admins(pacs: Context) -> dict[str, Reader]:
    """Admins (no physician role) who enrolled TOTP and chose their own password."""
    return add_readers(pacs, list(ADMINS), frozenset({"admin"}))


def _seed(pacs: Context) -> dict[str, Reader]:
    """Sixty records with long details, a failed login, and a plaintext node (a selfcheck finding)."""
    for n in range(60):
        pacs.audit.append(
            AuditEvent(
                EventID.INSTANCES_ACCESSED,
                Action.READ,
                user_id="carol" if n % 2 else "dave",
                source="192.0.2.44",
                patient_id=f"PID-{n % 5}",
                study_uid=f"1.2.826.0.1.3680043.8.498.{10_000 + n}",
                details={"what": "viewer opened", "series": [f"1.2.3.{n}.{k}" for k in range(12)], "n": n},
            )
        )
    pacs.audit.append(
        AuditEvent(
            EventID.USER_AUTHENTICATION,
            Action.EXECUTE,
            outcome=Outcome.MINOR_FAILURE,
            user_id="mallory",
            source="203.0.113.9",
            event_type=EventType.LOGIN,
            details={"step": "password", "reason": "wrong password"},
        )
    )
    settings = pacs.settings
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    NodeRegistry(pacs.database).add(
        "OLDCT",
        host="10.0.0.7",
        certificate=pki.issue_client_cert(ca, "OLDCT").cert,
        cert_issued=True,
        plaintext=True,
    )
    return _add_admins(pacs)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[dict[str, Reader]]]:
    with serve_archive(tmp_path_factory.mktemp("admin-pages"), _seed, [PHYSICIAN_READER]) as served:
        yield served


@contextmanager
def _page(browser: Browser, live: Live[dict[str, Reader]]) -> Iterator[Page]:
    """A page of a fresh context; a CSP violation or a script error fails the block (a 4xx load may not)."""
    problems: list[str] = []
    with new_context(browser, live, 1280, 800) as context:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)

        def on_console(message: ConsoleMessage) -> None:
            if "CSP violation" in message.text or "Refused to" in message.text:
                problems.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        yield page
    assert problems == []


def _log_in(page: Page, reader: Reader, lands_on: str) -> None:
    page.goto("/login")
    page.fill("#username", reader.name)
    page.fill("#password", reader.password)
    page.click("#submit")
    wait_for_path(page, "/login/totp")
    page.fill("#code", reader.totp.now())
    page.click("#submit")
    wait_for_path(page, lands_on)


def test_the_audit_log_is_compact_in_words_and_filtered(
    browser: Browser, live: Live[dict[str, Reader]], tmp_path: Path
) -> None:
    with _page(browser, live) as page:
        _log_in(page, live.seeded["boss"], "/admin/users")
        page.goto("/admin/audit")
        rows = page.locator("#audit tbody tr[data-seq]")
        expect(rows).to_have_count(50)
        page.screenshot(path=str(tmp_path / "audit-default.png"), full_page=True)
        height = page.evaluate("() => document.documentElement.scrollHeight")
        assert height < 2600, height  # 5,600 px before: 100 records with their JSON spread out
        tallest = page.evaluate(
            "() => Math.max(...[...document.querySelectorAll('#audit tbody tr')].map(r => r.offsetHeight))"
        )
        assert tallest < 48, tallest
        # The newest failures may be the start-up selfcheck's; the seeded failed login is among them.
        failed = page.locator("#audit tbody tr.failure", has_text="User Authentication: Login").first
        expect(failed.locator("td.event")).to_have_text("User Authentication: Login")
        expect(failed.locator("td.outcome")).to_have_text("Minor failure")
        page.select_option("#audit-filters select[name=event]", "110103")
        page.fill("#audit-filters input[name=user]", "carol")
        page.fill("#audit-filters input[name=patient]", "PID-3")
        page.click("#audit-filters button[type=submit]")
        page.wait_for_load_state()
        expect(rows).to_have_count(6)
        expect(rows.locator("td.user").first).to_have_text("carol")
        first = rows.first.locator("td.details")
        expect(first.locator("pre")).to_be_hidden()
        first.locator("summary").click()
        expect(first.locator("pre")).to_be_visible()
        expect(first.locator("pre")).to_contain_text('"what": "viewer opened"')
        page.screenshot(path=str(tmp_path / "audit-filtered.png"), full_page=True)


def test_the_status_page_shows_the_selfcheck_finding_and_its_fix(
    browser: Browser, live: Live[dict[str, Reader]], tmp_path: Path
) -> None:
    with _page(browser, live) as page:
        _log_in(page, live.seeded["chief"], "/admin/users")
        page.goto("/admin/status")
        finding = page.locator('#findings li[data-check="plaintext-dicom"]')
        expect(finding).to_be_visible()
        expect(finding.locator(".message")).to_contain_text(
            "node OLDCT at 10.0.0.7/32 may send UNENCRYPTED DICOM"
        )
        expect(finding.locator(".fix")).to_contain_text("Fix: give it TLS")
        expect(page.locator("#verdict")).not_to_contain_text("All is well")
        page.screenshot(path=str(tmp_path / "status-finding.png"), full_page=True)
        page.goto("/")
        wait_for_path(page, "/admin/users")
        response = page.goto("/studies/1.2.3.4.5")
        assert response is not None and response.status == 403
        expect(page.locator("h1")).to_have_text("You do not have access to this page")
        expect(page.locator("nav.main")).to_contain_text("Audit log")
        page.screenshot(path=str(tmp_path / "error-403.png"), full_page=True)
        page.goto("/admin/modalities")
        expect(page.locator("#ae-title-rule")).to_contain_text("1 to 16 characters")
        page.screenshot(path=str(tmp_path / "modalities-form.png"), full_page=True)


def test_an_unknown_study_is_a_404_page_in_the_layout(
    browser: Browser, live: Live[dict[str, Reader]], tmp_path: Path
) -> None:
    with _page(browser, live) as page:
        _log_in(page, live.readers[PHYSICIAN_READER], "/")
        response = page.goto("/studies/1.2.3.4.5")
        assert response is not None and response.status == 404
        expect(page.locator("h1")).to_have_text("No such study")
        expect(page.locator("#home")).to_have_attribute("href", "/")
        expect(page.locator("nav.main")).to_contain_text("Studies")
        page.screenshot(path=str(tmp_path / "error-404.png"), full_page=True)
