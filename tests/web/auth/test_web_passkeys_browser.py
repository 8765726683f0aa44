"""Passkeys in headless Chromium against ``pacs serve`` (issue #16), with the DevTools virtual authenticator.

A CDP session gives each page a platform authenticator (CTAP2, internal transport, resident
keys, user verification) that answers ``navigator.credentials`` like a phone or laptop would.
A user registers a passkey from the account page after a full login, logs out, and logs in with
the password and the passkey. The same credential's key (read back from the authenticator)
then signs assertions for another origin and another RP ID, as a relaying phishing page would
get them: the server refuses both; once the passkey is removed, even a right assertion is
refused. The server requires passkeys for admins: an admin is sent to register one after a
TOTP login, and then a valid TOTP code no longer logs them in, the passkey does. The refusals
are read back from the running archive's audit trail. Screenshots of the
account page and of the login step offering the passkey are written under the test's tmp path.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_der_private_key
from playwright.sync_api import CDPSession, Page, expect

from pacs.core.config import load_settings
from pacs.core.context import Context, open_pacs
from tests.core.webauthn_authenticator import SoftAuthenticator
from tests.web.browser import Reader, log_in_reader, wait_for_path
from tests.web.viewer_live import Live, add_readers, serve_archive

PHISHING_ORIGIN = "https://pacs-login.example"
ADMIN = frozenset({"admin"})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Reader]]:
    """``pacs serve`` with ``[web] require_passkey = "admins"``, two physicians and an admin."""

    def seed(pacs: Context) -> Reader:
        config = pacs.settings.data_dir / "pacs.toml"
        text = config.read_text()
        assert 'require_passkey = "none"' in text
        config.write_text(text.replace('require_passkey = "none"', 'require_passkey = "admins"'))
        return add_readers(pacs, ["root"], ADMIN)["root"]

    with serve_archive(tmp_path_factory.mktemp("passkeys-browser"), seed, ["ana", "ben"]) as served:
        yield served


@pytest.fixture
def authenticator(page: Page) -> tuple[CDPSession, str]:
    """A virtual platform authenticator on `page` (the CDP session and its id)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp, str(added["authenticatorId"])


def _add_passkey(page: Page, name: str) -> None:
    page.goto("/account/passkeys")
    page.fill("#passkey-name", name)
    page.click("#add-passkey-button")
    expect(page.locator("#passkeys tbody tr")).to_have_count(1)
    expect(page.locator("#passkeys td.name")).to_have_text(name)


def _log_out_and_enter_password(page: Page, reader: Reader) -> None:
    page.click("#logout")
    wait_for_path(page, "/login")
    page.fill("#username", reader.name)
    page.fill("#password", reader.password)
    page.click("#submit")
    wait_for_path(page, "/login/totp")


def _clone(cdp: CDPSession, authenticator_id: str) -> SoftAuthenticator:
    """The one credential of the virtual authenticator, as a software authenticator with its key."""
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
    assert len(credentials) == 1 and credentials[0]["rpId"] == "localhost"
    found = credentials[0]
    key = load_der_private_key(base64.b64decode(found["privateKey"]), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | Ed25519PrivateKey), type(key)
    return SoftAuthenticator(base64.b64decode(found["credentialId"]), key, int(found["signCount"]))


def _post_assertion(page: Page, clone: SoftAuthenticator, **answer: Any) -> str:
    """What a relaying page would post: an assertion by `clone`; where the server says to go."""
    token = page.locator("#code").locator("xpath=ancestor::form").locator("[name=csrf_token]").input_value()
    options = page.request.post("/login/passkey/options", form={"csrf_token": token})
    assert options.ok, options.status
    credential = clone.get(options.text(), **answer)
    sent = page.request.post("/login/passkey", form={"csrf_token": token, "credential": credential})
    return str(sent.json()["redirect"])


def _audit(live: Live[Reader], user: str) -> list[dict[str, Any]]:
    pacs = open_pacs(load_settings(live.home.parent / "data", {}))
    try:
        return [json.loads(r.details) for r in pacs.audit.records() if r.user_id == user]
    finally:
        pacs.close()


def test_a_passkey_registered_on_the_account_page_logs_in_instead_of_the_code(
    page: Page, live: Live[Reader], authenticator: tuple[CDPSession, str], tmp_path: Path
) -> None:
    ana = live.readers["ana"]
    log_in_reader(page, ana)
    page.click("#nav-passkeys")
    wait_for_path(page, "/account/passkeys")
    expect(page.locator("#no-passkeys")).to_be_visible()
    _add_passkey(page, "Ana's laptop")
    expect(page.locator(".flash")).to_contain_text("is registered")
    expect(page.locator("#passkeys td.last-used")).to_have_text("never")
    page.screenshot(path=str(tmp_path / "account-passkeys.png"), full_page=True)

    _log_out_and_enter_password(page, ana)
    expect(page.locator("#use-passkey-button")).to_be_visible()
    page.screenshot(path=str(tmp_path / "login-offers-passkey.png"), full_page=True)
    page.click("#use-passkey-button")
    wait_for_path(page, "/")
    expect(page.locator("#studies")).to_be_visible()
    page.goto("/account/passkeys")
    expect(page.locator("#passkeys td.last-used")).not_to_have_text("never")
    page.screenshot(path=str(tmp_path / "account-passkeys-used.png"), full_page=True)
    audited = _audit(live, "ana")
    assert any(d.get("what") == "passkey registered" and d.get("passkey") == "Ana's laptop" for d in audited)
    assert any(d.get("factor") == "passkey" and d.get("passkey") == "Ana's laptop" for d in audited)


def test_assertions_for_another_origin_or_rp_id_and_of_a_removed_passkey_are_refused(
    page: Page, live: Live[Reader], authenticator: tuple[CDPSession, str], tmp_path: Path
) -> None:
    ben = live.readers["ben"]
    log_in_reader(page, ben)
    _add_passkey(page, "Ben's key")
    clone = _clone(*authenticator)
    _log_out_and_enter_password(page, ben)

    assert _post_assertion(page, clone, origin=PHISHING_ORIGIN) == "/login"
    assert _post_assertion(page, clone, origin=live.base_url, rp_id="pacs-login.example") == "/login"
    page.goto("/")
    wait_for_path(page, "/login")
    expect(page.locator(".flash")).to_have_count(2)  # each refusal told as a wrong code
    expect(page.locator(".flash").first).to_contain_text("Wrong user name, password or code")

    page.fill("#username", ben.name)
    page.fill("#password", ben.password)
    page.click("#submit")
    wait_for_path(page, "/login/totp")
    page.click("#use-passkey-button")  # the same credential, through the browser at the right origin
    wait_for_path(page, "/")

    page.goto("/account/passkeys")
    page.click("#passkeys [data-action=remove]")
    expect(page.locator("#no-passkeys")).to_be_visible()
    page.screenshot(path=str(tmp_path / "account-passkey-removed.png"), full_page=True)
    _log_out_and_enter_password(page, ben)
    expect(page.locator("#use-passkey-button")).to_have_count(0)
    assert _post_assertion(page, clone, origin=live.base_url) == "/login"

    refusals = [d["reason"] for d in _audit(live, "ben") if d.get("step") == "passkey"]
    assert len(refusals) == 3, refusals
    assert "origin" in refusals[0].lower() and "rp id" in refusals[1].lower()
    assert refusals[2] == "not a registered passkey of this user"


def test_an_admin_registers_a_passkey_before_anything_else_and_then_cannot_use_a_code(
    page: Page, live: Live[Reader], authenticator: tuple[CDPSession, str], tmp_path: Path
) -> None:
    root = live.seeded
    page.goto("/login")
    page.fill("#username", root.name)
    page.fill("#password", root.password)
    page.click("#submit")
    wait_for_path(page, "/login/totp")
    expect(page.locator("#use-passkey-button")).to_have_count(0)
    page.fill("#code", root.totp.now())
    page.click("#submit")
    wait_for_path(page, "/account/passkeys")
    expect(page.locator(".flash")).to_contain_text("Passkeys are required for admins")
    page.screenshot(path=str(tmp_path / "admin-must-register.png"), full_page=True)
    _add_passkey(page, "Root's key")
    page.goto("/admin/users")
    wait_for_path(page, "/admin/users")

    _log_out_and_enter_password(page, root)
    page.fill("#code", root.totp.at(time.time() + 30))  # a fresh, valid code: refused for an admin
    page.click("#submit")
    wait_for_path(page, "/login")
    expect(page.locator(".flash")).to_contain_text("Wrong user name, password or code")
    page.fill("#username", root.name)
    page.fill("#password", root.password)
    page.click("#submit")
    wait_for_path(page, "/login/totp")
    page.click("#use-passkey-button")
    wait_for_path(page, "/admin/users")
    reasons = [d.get("reason") for d in _audit(live, "root") if d.get("step") == "totp"]
    assert reasons == ["a passkey is required for admins"]
