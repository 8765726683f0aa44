"""Passkeys as a second factor (issue #16): registration, login assertions, counters, removal and audit.

A software authenticator (:mod:`tests.core.webauthn_authenticator`) answers the options the
service issues, as the browser would, on both database backends; it can also answer as a
page of another origin or for another RP ID, which the service must refuse.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from webauthn.helpers import bytes_to_base64url

from pacs.core.accounts import LOCKOUT_AFTER, MAX_BACKOFF, Accounts, LoginVerdict
from pacs.core.audit import EventID, EventType
from pacs.core.config import ConfigError, Settings, parse_settings, with_overrides
from pacs.core.context import Context
from pacs.core.passkeys import PasskeyError, Passkeys, RelyingParty
from tests.core.accounts_helpers import ADDRESS, PHYSICIAN, Clock
from tests.core.accounts_helpers import OTHER_PASSPHRASE as PASSWORD
from tests.core.webauthn_authenticator import ORIGIN, SoftAuthenticator

ADMIN = frozenset({"admin"})


@pytest.fixture
def passkeys(pacs: Context, accounts: Accounts, clock: Clock) -> Passkeys:
    return Passkeys(pacs.database, RelyingParty.of("localhost", 443), pacs.audit, accounts, now=clock)


@pytest.fixture
def doc(accounts: Accounts) -> str:
    accounts.add("doc", PHYSICIAN, PASSWORD)
    return "doc"


def _register(
    passkeys: Passkeys, name: str, authenticator: SoftAuthenticator, label: str = "Office key"
) -> int:
    issued = passkeys.registration_options(name)
    return passkeys.register(
        name, authenticator.create(issued.options), issued.challenge, label, source=ADDRESS
    ).id


def _log_in(
    passkeys: Passkeys, name: str, authenticator: SoftAuthenticator, **answer: object
) -> LoginVerdict:
    issued = passkeys.login_options(name)
    credential = authenticator.get(issued.options, **answer)  # type: ignore[arg-type]
    verdict, _, _ = passkeys.check_login(name, credential, issued.challenge, source=ADDRESS)
    return verdict


def _events(pacs: Context, what: str) -> list[dict[str, object]]:
    found = []
    for record in pacs.audit.records():
        details = json.loads(record.details)
        if details.get("what") == what:
            found.append({"user": record.user_id, "event": record.event_id, **details})
    return found


def test_a_registered_passkey_logs_in_and_keeps_its_counter_and_last_use(
    passkeys: Passkeys, doc: str, clock: Clock
) -> None:
    authenticator = SoftAuthenticator()
    _register(passkeys, doc, authenticator)
    assert passkeys.of_user(doc)[0].last_used_at is None
    clock.advance(60)
    assert _log_in(passkeys, doc, authenticator) is LoginVerdict.ACCEPTED
    listed = passkeys.of_user(doc)
    assert [p.name for p in listed] == ["Office key"] and listed[0].transports == ("internal",)
    assert listed[0].last_used_at is not None and listed[0].last_used_at > listed[0].created_at


def test_the_options_name_the_archive_as_relying_party_and_ask_no_attestation(
    passkeys: Passkeys, doc: str
) -> None:
    authenticator = SoftAuthenticator()
    _register(passkeys, doc, authenticator)
    created = json.loads(passkeys.registration_options(doc).options)
    assert created["rp"]["id"] == "localhost" and created["attestation"] == "none"
    assert created["authenticatorSelection"]["userVerification"] == "preferred"
    assert [c["id"] for c in created["excludeCredentials"]] == [
        bytes_to_base64url(authenticator.credential_id)
    ]
    requested = json.loads(passkeys.login_options(doc).options)
    assert requested["rpId"] == "localhost" and len(requested["allowCredentials"]) == 1


def test_a_passkey_made_for_another_rp_id_is_not_registered(
    passkeys: Passkeys, pacs: Context, doc: str
) -> None:
    issued = passkeys.registration_options(doc)
    answer = SoftAuthenticator().create(issued.options, rp_id="evil.example")
    with pytest.raises(PasskeyError, match="not accepted"):
        passkeys.register(doc, answer, issued.challenge, "Phished", source=ADDRESS)
    assert passkeys.of_user(doc) == []
    assert _events(pacs, "passkey registration refused")[0]["user"] == doc


def test_a_passkey_registered_from_another_origin_is_not_registered(passkeys: Passkeys, doc: str) -> None:
    issued = passkeys.registration_options(doc)
    answer = SoftAuthenticator().create(issued.options, origin="https://pacs-login.example")
    with pytest.raises(PasskeyError):
        passkeys.register(doc, answer, issued.challenge, "Phished", source=ADDRESS)
    assert passkeys.count(doc) == 0


def test_an_assertion_from_another_origin_is_refused(passkeys: Passkeys, doc: str) -> None:
    authenticator = SoftAuthenticator()
    _register(passkeys, doc, authenticator)
    assert _log_in(passkeys, doc, authenticator, origin="https://pacs-login.example") is LoginVerdict.WRONG
    assert _log_in(passkeys, doc, authenticator, origin="https://localhost:8443") is LoginVerdict.WRONG
    assert _log_in(passkeys, doc, authenticator, origin=ORIGIN) is LoginVerdict.ACCEPTED


def test_an_assertion_for_another_rp_id_is_refused(passkeys: Passkeys, doc: str) -> None:
    authenticator = SoftAuthenticator()
    _register(passkeys, doc, authenticator)
    assert _log_in(passkeys, doc, authenticator, rp_id="evil.example") is LoginVerdict.WRONG


def test_a_counter_that_does_not_grow_is_refused_as_a_cloned_authenticator(
    passkeys: Passkeys, doc: str
) -> None:
    authenticator = SoftAuthenticator()
    _register(passkeys, doc, authenticator)
    assert _log_in(passkeys, doc, authenticator) is LoginVerdict.ACCEPTED
    assert _log_in(passkeys, doc, authenticator, count=0) is LoginVerdict.WRONG


def test_a_challenge_answers_once(passkeys: Passkeys, doc: str) -> None:
    authenticator = SoftAuthenticator()
    _register(passkeys, doc, authenticator)
    first, second = passkeys.login_options(doc), passkeys.login_options(doc)
    answer = authenticator.get(first.options)
    verdict, _, reason = passkeys.check_login(doc, answer, second.challenge, source=ADDRESS)
    assert verdict is LoginVerdict.WRONG and "challenge" in reason.lower()


def test_a_removed_passkey_is_refused(passkeys: Passkeys, pacs: Context, doc: str) -> None:
    authenticator = SoftAuthenticator()
    passkey_id = _register(passkeys, doc, authenticator)
    issued = passkeys.login_options(doc)
    answer = authenticator.get(issued.options)
    passkeys.remove(doc, passkey_id, source=ADDRESS)
    verdict, used, reason = passkeys.check_login(doc, answer, issued.challenge, source=ADDRESS)
    assert (verdict, used, reason) == (LoginVerdict.WRONG, None, "not a registered passkey of this user")
    assert _events(pacs, "passkey removed")[0]["passkey"] == "Office key"


def test_another_users_passkey_does_not_log_in(passkeys: Passkeys, accounts: Accounts, doc: str) -> None:
    accounts.add("nurse", PHYSICIAN, PASSWORD)
    theirs = SoftAuthenticator()
    _register(passkeys, "nurse", theirs)
    _register(passkeys, doc, SoftAuthenticator())
    assert _log_in(passkeys, doc, theirs) is LoginVerdict.WRONG


def test_failed_assertions_count_like_wrong_codes_and_lock_the_account(
    passkeys: Passkeys, accounts: Accounts, pacs: Context, doc: str, clock: Clock
) -> None:
    authenticator = SoftAuthenticator()
    _register(passkeys, doc, authenticator)
    for _ in range(LOCKOUT_AFTER):
        assert _log_in(passkeys, doc, authenticator, origin="https://phish.example") is LoginVerdict.WRONG
        clock.advance(MAX_BACKOFF.total_seconds() + 1)
    account = accounts.get(doc)
    assert account is not None and account.locked
    locks = [
        r for r in pacs.audit.records() if r.event_id == str(EventID.SECURITY_ALERT) and r.user_id == doc
    ]
    assert any("locked" in r.details for r in locks)


def test_a_deferred_wrong_password_fails_even_with_the_right_passkey(passkeys: Passkeys, doc: str) -> None:
    authenticator = SoftAuthenticator()
    _register(passkeys, doc, authenticator)
    issued = passkeys.login_options(doc)
    answer = authenticator.get(issued.options)
    verdict, used, _ = passkeys.check_login(
        doc, answer, issued.challenge, source=ADDRESS, password_right=False
    )
    assert (verdict, used) == (LoginVerdict.WRONG, None)
    assert passkeys.of_user(doc)[0].last_used_at is None


def test_registration_renaming_and_removal_are_audited(passkeys: Passkeys, pacs: Context, doc: str) -> None:
    passkey_id = _register(passkeys, doc, SoftAuthenticator(), "Laptop")
    passkeys.rename(doc, passkey_id, "Work laptop", source=ADDRESS)
    passkeys.remove(doc, passkey_id, source=ADDRESS)
    registered = _events(pacs, "passkey registered")
    assert registered[0]["passkey"] == "Laptop" and registered[0]["id"] == passkey_id
    assert _events(pacs, "passkey renamed")[0]["new"] == "Work laptop"
    assert [e["user"] for e in _events(pacs, "passkey removed")] == [doc]
    types = {r.event_type for r in pacs.audit.records() if "passkey" in r.details}
    assert str(EventType.USER_SECURITY_ATTRIBUTES_CHANGED) in types


def test_a_name_is_required_and_short(passkeys: Passkeys, doc: str) -> None:
    passkey_id = _register(passkeys, doc, SoftAuthenticator())
    for bad in ("", "   ", "x" * 65):
        with pytest.raises(PasskeyError, match="1 to 64"):
            passkeys.rename(doc, passkey_id, bad, source=ADDRESS)


def test_the_last_passkey_of_an_admin_is_kept_when_they_are_required(
    passkeys: Passkeys, accounts: Accounts
) -> None:
    accounts.add("boss", ADMIN, PASSWORD)
    first = _register(passkeys, "boss", SoftAuthenticator(), "First")
    second = _register(passkeys, "boss", SoftAuthenticator(), "Second")
    passkeys.remove("boss", first, source=ADDRESS, keep_one=True)
    with pytest.raises(PasskeyError, match="required for admins"):
        passkeys.remove("boss", second, source=ADDRESS, keep_one=True)
    assert [p.name for p in passkeys.of_user("boss")] == ["Second"]


def test_nobody_renames_or_removes_another_users_passkey(
    passkeys: Passkeys, accounts: Accounts, doc: str
) -> None:
    accounts.add("nurse", PHYSICIAN, PASSWORD)
    theirs = _register(passkeys, "nurse", SoftAuthenticator())
    with pytest.raises(PasskeyError, match="no passkey"):
        passkeys.remove(doc, theirs, source=ADDRESS)
    with pytest.raises(PasskeyError, match="no passkey"):
        passkeys.rename(doc, theirs, "Mine now", source=ADDRESS)
    assert passkeys.count("nurse") == 1


def test_the_relying_party_is_the_hostname_and_its_https_origin() -> None:
    assert RelyingParty.of("pacs.clinic.example", 8443).origin == "https://pacs.clinic.example:8443"
    assert RelyingParty.of("pacs.clinic.example", 443).origin == "https://pacs.clinic.example"
    assert RelyingParty.of("pacs.clinic.example", 443).rp_id == "pacs.clinic.example"


def test_require_passkey_is_none_or_admins_in_pacs_toml_and_the_environment(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path)
    assert base.web.require_passkey == "none"
    assert with_overrides(base, "web", require_passkey="admins").web.require_passkey == "admins"
    with pytest.raises(ConfigError, match=r"\[web\] require_passkey"):
        with_overrides(base, "web", require_passkey="everyone")
    content = '[web]\nrequire_passkey = "admins"\n'
    parsed = parse_settings(content, tmp_path, {}, origin="pacs.toml")
    assert parsed.web.require_passkey == "admins"
    environ = {"PACS_WEB_REQUIRE_PASSKEY": "none"}
    assert parse_settings(content, tmp_path, environ, origin="pacs.toml").web.require_passkey == "none"
