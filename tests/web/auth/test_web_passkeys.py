"""Passkeys in the web viewer (issue #16): the account page, the login step, and passkeys required for admins.

A software authenticator (:mod:`tests.core.webauthn_authenticator`) answers as the browser's
script would, at the test client's origin (``https://localhost``) or as another origin's page.
The pages run on both backends (the ``web`` fixture); time is the fake clock of
:mod:`tests.web.web_helpers`, except for the challenges' expiry.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from werkzeug.test import TestResponse

from pacs.core.context import Context
from tests.core.webauthn_authenticator import SoftAuthenticator
from tests.web.web_helpers import ADMIN, STEP, Browser, User, Web, details, is_redirect_to, make_web, messages
from webviewer import passkeys as passkey_pages
from webviewer.auth import FAILED

ACCOUNT = "/account/passkeys"
PHISHING_ORIGIN = "https://pacs-login.example"


def register(browser: Browser, authenticator: SoftAuthenticator, name: str = "Office key") -> dict[str, Any]:
    """Add a passkey from the account page, as its script does; the JSON answer."""
    token = browser.token(ACCOUNT)
    options = browser.client.post(f"{ACCOUNT}/options", data={"csrf_token": token})
    assert options.status_code == 200, options.status_code
    credential = authenticator.create(options.text)
    answer = browser.client.post(ACCOUNT, data={"csrf_token": token, "name": name, "credential": credential})
    return dict(answer.get_json())


def use_passkey(browser: Browser, authenticator: SoftAuthenticator, **answer: Any) -> str:
    """The passkey step after the password, as the code page's script does; where it says to go."""
    token = browser.token("/login/totp")
    options = browser.client.post("/login/passkey/options", data={"csrf_token": token})
    credential = authenticator.get(options.text, **answer)
    sent = browser.client.post("/login/passkey", data={"csrf_token": token, "credential": credential})
    return str(sent.get_json()["redirect"])


def password_step(browser: Browser, user: User) -> None:
    assert is_redirect_to(browser.enter_password(user.name, user.password), "/login/totp")


def with_passkey(web: Web, user: User) -> SoftAuthenticator:
    """`user` logs in with TOTP, registers a passkey and logs out."""
    browser = web.logged_in(user)
    authenticator = SoftAuthenticator()
    assert register(browser, authenticator)["ok"] is True
    browser.log_out()
    return authenticator


def _passkey_events(web: Web, what: str) -> list[dict[str, Any]]:
    return [details(r) for r in web.pacs.audit.records() if details(r).get("what") == what]


def _logins(web: Web, user: str) -> list[dict[str, Any]]:
    return [details(r) for r in web.audit("110114", "110122", user)]


def test_the_account_page_lists_a_passkey_added_after_a_full_login(web: Web) -> None:
    browser = web.logged_in(web.user("doc"))
    assert 'id="no-passkeys"' in browser.get(ACCOUNT).text
    assert register(browser, SoftAuthenticator(), "Office key") == {"ok": True, "redirect": ACCOUNT}
    page = browser.get(ACCOUNT)
    assert page.headers["Cache-Control"] == "no-store"
    assert "Office key" in page.text and 'class="last-used">never<' in page.text
    assert "The passkey 'Office key' is registered." in messages(page.text)
    assert _passkey_events(web, "passkey registered")[0]["user"] == "doc"


def test_no_passkey_is_added_between_password_and_code(web: Web) -> None:
    user = web.user("doc")
    browser = web.browser()
    password_step(browser, user)
    assert is_redirect_to(browser.get(ACCOUNT), "/login")
    token = browser.token("/login/totp")
    assert is_redirect_to(browser.client.post(f"{ACCOUNT}/options", data={"csrf_token": token}), "/login")


def test_adding_a_passkey_needs_the_csrf_token(web: Web) -> None:
    browser = web.logged_in(web.user("doc"))
    assert browser.client.post(f"{ACCOUNT}/options", data={}).status_code == 400


def test_the_code_page_offers_a_passkey_only_to_a_user_who_has_one(web: Web) -> None:
    doc, nurse = web.user("doc"), web.user("nurse")
    with_passkey(web, doc)
    for user, offered in ((doc, True), (nurse, False)):
        browser = web.browser()
        password_step(browser, user)
        assert ('id="use-passkey"' in browser.get("/login/totp").text) is offered


def test_a_passkey_replaces_the_code_at_login_and_is_audited(web: Web) -> None:
    doc = web.user("doc")
    authenticator = with_passkey(web, doc)
    browser = web.browser()
    password_step(browser, doc)
    assert use_passkey(browser, authenticator) == "/"
    assert browser.get("/").status_code == 200
    assert _logins(web, "doc")[-1] == {"factor": "passkey", "passkey": "Office key", "id": 1}
    assert "never" not in browser.get(ACCOUNT).text.split('class="last-used">')[1][:10]


def test_an_assertion_made_for_another_origin_fails_like_a_wrong_code(web: Web) -> None:
    doc = web.user("doc")
    authenticator = with_passkey(web, doc)
    browser = web.browser()
    password_step(browser, doc)
    assert use_passkey(browser, authenticator, origin=PHISHING_ORIGIN) == "/login"
    assert FAILED in browser.messages()
    assert is_redirect_to(browser.get("/"), "/login")
    failed = [details(r) for r in web.audit("110114", "110122", "doc") if details(r).get("step") == "passkey"]
    assert failed and "origin" in failed[-1]["reason"].lower()


def test_a_removed_passkey_no_longer_logs_in(web: Web) -> None:
    doc = web.user("doc")
    authenticator = with_passkey(web, doc)
    browser = web.logged_in(doc)
    removed = browser.post(f"{ACCOUNT}/1/remove", {}, form_page=ACCOUNT)
    assert is_redirect_to(removed, ACCOUNT) and 'id="no-passkeys"' in browser.get(ACCOUNT).text
    browser.log_out()
    again = web.browser()
    password_step(again, doc)
    assert 'id="use-passkey"' not in again.get("/login/totp").text
    assert use_passkey(again, authenticator) == "/login"
    assert is_redirect_to(again.get("/"), "/login")
    assert _passkey_events(web, "passkey removed")[0]["passkey"] == "Office key"


def test_a_passkey_is_renamed_on_the_account_page(web: Web) -> None:
    doc = web.user("doc")
    with_passkey(web, doc)
    browser = web.logged_in(doc)
    assert is_redirect_to(
        browser.post(f"{ACCOUNT}/1/rename", {"name": "Spare key"}, form_page=ACCOUNT), ACCOUNT
    )
    assert "Spare key" in browser.get(ACCOUNT).text
    assert _passkey_events(web, "passkey renamed")[0]["old"] == "Office key"


def test_a_recovery_code_still_logs_in_a_user_with_a_passkey(web: Web) -> None:
    doc = web.user("doc")
    with_passkey(web, doc)
    browser = web.browser()
    password_step(browser, doc)
    assert is_redirect_to(browser.enter_code(doc.recovery_codes[0]), "/")


def test_a_login_challenge_answers_once_and_runs_out(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = web.user("doc")
    authenticator = with_passkey(web, doc)
    browser = web.browser()
    password_step(browser, doc)
    token = browser.token("/login/totp")
    options = browser.client.post("/login/passkey/options", data={"csrf_token": token})
    credential = authenticator.get(options.text)
    browser.client.post("/login/passkey", data={"csrf_token": token, "credential": "{}"})
    replayed = browser.client.post("/login/passkey", data={"csrf_token": token, "credential": credential})
    assert replayed.get_json()["redirect"] == "/login"
    password_step(browser, doc)
    monkeypatch.setattr(passkey_pages, "CHALLENGE_SECONDS", -1)
    assert use_passkey(browser, authenticator) == "/login"
    reasons = [d.get("reason") for d in _logins(web, "doc") if d.get("step") == "passkey"]
    assert reasons[-2:] == ["no passkey challenge, or it ran out"] * 2


# Passkeys required for admins ([web] require_passkey = "admins").


@pytest.fixture
def strict(pacs: Context) -> Web:
    return make_web(pacs, require_passkey="admins")


def _admin_login_with_code(web: Web, admin: User) -> tuple[Browser, TestResponse]:
    browser = web.browser()
    password_step(browser, admin)
    web.clock.advance(STEP)
    assert admin.totp is not None
    return browser, browser.enter_code(admin.totp.at(web.clock()))


def test_an_admin_without_a_passkey_is_sent_to_register_one_first(strict: Web) -> None:
    admin = strict.user("boss", ADMIN)
    browser, response = _admin_login_with_code(strict, admin)
    assert is_redirect_to(response, "/admin/users")
    assert is_redirect_to(browser.get("/admin/users"), ACCOUNT)
    assert is_redirect_to(browser.get("/admin/audit"), ACCOUNT)
    assert register(browser, SoftAuthenticator())["ok"] is True
    assert browser.get("/admin/users").status_code == 200


def test_an_admin_with_a_passkey_cannot_log_in_with_a_code(strict: Web) -> None:
    admin = strict.user("boss", ADMIN)
    browser, _ = _admin_login_with_code(strict, admin)
    authenticator = SoftAuthenticator()
    assert register(browser, authenticator)["ok"] is True
    browser.log_out()
    refused, response = _admin_login_with_code(strict, admin)
    assert is_redirect_to(response, "/login") and FAILED in refused.messages()
    reasons = [d.get("reason") for d in _logins(strict, "boss") if d.get("step") == "totp"]
    assert reasons == ["a passkey is required for admins"]
    password_step(refused, admin)
    assert use_passkey(refused, authenticator) == "/admin/users"
    assert refused.get("/admin/users").status_code == 200


def test_an_admin_keeps_the_recovery_codes_and_the_last_passkey(strict: Web) -> None:
    admin = strict.user("boss", ADMIN)
    browser, _ = _admin_login_with_code(strict, admin)
    register(browser, SoftAuthenticator())
    removed = browser.post(f"{ACCOUNT}/1/remove", {}, form_page=ACCOUNT)
    page = browser.get(ACCOUNT).text
    assert is_redirect_to(removed, ACCOUNT) and "Office key" in page
    assert any("register another" in m for m in messages(page))
    browser.log_out()
    again = strict.browser()
    password_step(again, admin)
    assert is_redirect_to(again.enter_code(admin.recovery_codes[0]), "/admin/users")


def test_a_physician_still_logs_in_with_a_code_when_admins_need_passkeys(strict: Web) -> None:
    doc = strict.user("doc")
    with_passkey(strict, doc)
    strict.logged_in(doc)
    assert json.dumps(_logins(strict, "doc")[-1]) == "{}"
