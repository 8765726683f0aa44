"""``pacs user ...`` and the first admin made by ``pacs init``: output, errors and audit records."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from pacs.cli import main
from pacs.core.accounts import LOCKOUT_AFTER, Account, Accounts, LoginVerdict
from pacs.core.config import load_settings
from pacs.core.context import Context, open_pacs

PASSPHRASE = "violet kestrel under the quarry"
ADDRESS = "192.0.2.10"
USER_CHANGED = "110136"
_PASSWORD_LINE = re.compile(r"one-time password: (\S+)")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={})
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pacs: error: ")
    assert "Traceback" not in err
    return lines[0]


def _password_in(out: str) -> str:
    found = _PASSWORD_LINE.findall(out)
    assert len(found) == 1, out
    return str(found[0])


@dataclass(frozen=True)
class Archive:
    """A data directory made by ``pacs init`` and the first admin's one-time password."""

    data: Path
    admin_password: str

    def user(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        """Run ``pacs user ARGV... --data DATA``."""
        return _run(capsys, "user", *argv, "--data", str(self.data))


@pytest.fixture
def archive(tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> Archive:
    """``pacs init`` on each index backend."""
    data = tmp_path / "pacs"
    code, out, err = _run(capsys, "init", "--data", str(data), *(["--db", db_url] if db_url else []))
    assert code == 0, err
    return Archive(data, _password_in(out))


@contextmanager
def _opened(archive: Archive) -> Iterator[Context]:
    pacs = open_pacs(load_settings(archive.data, {}))
    try:
        yield pacs
    finally:
        pacs.close()


@contextmanager
def _accounts(archive: Archive) -> Iterator[Accounts]:
    with _opened(archive) as pacs:
        yield Accounts(pacs.database, pacs.keyring, audit=pacs.audit)


def _account(archive: Archive, name: str) -> Account:
    with _accounts(archive) as accounts:
        account = accounts.get(name)
    assert account is not None
    return account


def _login(archive: Archive, name: str, password: str) -> LoginVerdict:
    with _accounts(archive) as accounts:
        return accounts.check_password(name, password, ADDRESS).verdict


def _enrol(archive: Archive, name: str) -> None:
    with _accounts(archive) as accounts:
        secret = accounts.begin_totp_enrolment(name)
        assert accounts.confirm_totp(name, pyotp.TOTP(secret).now()) is not None


def _user_changes(archive: Archive) -> list[dict[str, object]]:
    with _opened(archive) as pacs:
        return [json.loads(r.details) for r in pacs.audit.records() if r.event_type == USER_CHANGED]


def _add(archive: Archive, capsys: pytest.CaptureFixture[str], name: str, role: str = "physician") -> str:
    code, out, err = archive.user(capsys, "add", name, "--role", role)
    assert code == 0, err
    return _password_in(out)


# pacs init and the first admin.


def test_init_prints_a_one_time_password_that_works_for_the_first_admin(archive: Archive) -> None:
    assert _login(archive, "admin", archive.admin_password) is LoginVerdict.ACCEPTED
    admin = _account(archive, "admin")
    assert admin.is_admin and admin.must_change_password and not admin.totp_enrolled


def test_init_creates_no_other_account(archive: Archive) -> None:
    with _accounts(archive) as accounts:
        assert [a.name for a in accounts.all()] == ["admin"]


def test_init_names_the_first_admin_as_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "init", "--data", str(tmp_path / "d"), "--admin", "chief")
    assert code == 0
    archive = Archive(tmp_path / "d", _password_in(out))
    with _accounts(archive) as accounts:
        assert [a.name for a in accounts.all()] == ["chief"]
    assert _login(archive, "chief", archive.admin_password) is LoginVerdict.ACCEPTED


# user add.


def test_user_add_prints_a_one_time_password_that_works(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = archive.user(capsys, "add", "doc", "--role", "physician")
    assert (code, err) == (0, "")
    assert "created doc (physician)" in out
    assert _login(archive, "doc", _password_in(out)) is LoginVerdict.ACCEPTED
    doc = _account(archive, "doc")
    assert doc.roles == frozenset({"physician"}) and doc.must_change_password


def test_user_add_gives_both_roles(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    _add(archive, capsys, "chief", "admin,physician")
    assert _account(archive, "chief").roles == frozenset({"admin", "physician"})


def test_user_add_reads_the_password_from_stdin_and_does_not_print_it(
    archive: Archive, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSPHRASE + "\n"))
    code, out, err = archive.user(capsys, "add", "doc", "--role", "physician", "--password-stdin")
    assert code == 0, err
    assert PASSPHRASE not in out + err
    assert "password" not in out
    assert _login(archive, "doc", PASSPHRASE) is LoginVerdict.ACCEPTED


def test_user_add_refuses_a_common_password_from_stdin(
    archive: Archive, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("password1234\n"))
    code, out, err = archive.user(capsys, "add", "doc", "--role", "physician", "--password-stdin")
    assert code == 2
    assert "common" in _one_line_error(err)
    assert "password1234" not in out + err
    with _accounts(archive) as accounts:
        assert accounts.get("doc") is None


@pytest.mark.parametrize("weak", ["passwordpassword", "drjanedoe2024"])
def test_user_add_refuses_a_password_estimated_easy_to_guess_from_stdin(
    archive: Archive, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, weak: str
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(weak + "\n"))
    code, out, err = archive.user(capsys, "add", "dr.jane-doe", "--role", "physician", "--password-stdin")
    assert code == 2
    assert "too easy to guess" in _one_line_error(err)
    assert weak not in out + err
    with _accounts(archive) as accounts:
        assert accounts.get("dr.jane-doe") is None


def test_user_add_refuses_a_short_password_from_stdin(
    archive: Archive, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("kestrel\n"))
    code, _, err = archive.user(capsys, "add", "doc", "--role", "physician", "--password-stdin")
    assert code == 2
    assert "12 characters" in _one_line_error(err)


def test_user_add_refuses_an_unknown_role(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = archive.user(capsys, "add", "doc", "--role", "root")
    assert code == 2
    assert "root" in _one_line_error(err)
    assert "password" not in out
    with _accounts(archive) as accounts:
        assert accounts.get("doc") is None


def test_user_add_refuses_a_duplicate_user(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    _add(archive, capsys, "doc")
    code, out, err = archive.user(capsys, "add", "doc", "--role", "admin")
    assert code == 2
    assert "already exists" in _one_line_error(err)
    assert "password" not in out
    assert _account(archive, "doc").roles == frozenset({"physician"})


def test_user_add_refuses_a_bad_user_name(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = archive.user(capsys, "add", "dr smith", "--role", "physician")
    assert code == 2
    assert "user name" in _one_line_error(err)


# user list.


def test_user_list_shows_users_roles_and_second_factor_state(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(archive, capsys, "doc")
    _enrol(archive, "doc")
    code, out, _ = archive.user(capsys, "list")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.strip().splitlines()[1:]}
    assert sorted(rows) == ["admin", "doc"]
    assert rows["admin"][1:3] == ["admin", "pending"]
    assert rows["doc"][1:3] == ["physician", "enrolled"]


def test_user_list_shows_a_disabled_account(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    _add(archive, capsys, "doc")
    assert archive.user(capsys, "disable", "doc")[0] == 0
    _, out, _ = archive.user(capsys, "list")
    doc = next(line for line in out.splitlines() if line.startswith("doc "))
    admin = next(line for line in out.splitlines() if line.startswith("admin "))
    assert "disabled" in doc and "disabled" not in admin


# user disable.


def test_user_disable_refuses_the_last_enabled_admin(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = archive.user(capsys, "disable", "admin")
    assert code == 2
    assert "last enabled admin" in _one_line_error(err)
    assert not _account(archive, "admin").disabled


def test_user_disable_of_an_admin_works_while_another_admin_is_enabled(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(archive, capsys, "chief", "admin")
    assert archive.user(capsys, "disable", "admin")[0] == 0
    assert _account(archive, "admin").disabled
    code, _, err = archive.user(capsys, "disable", "chief")
    assert code == 2
    assert "last enabled admin" in _one_line_error(err)


def test_user_disable_disables_a_physician(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    password = _add(archive, capsys, "doc")
    code, out, _ = archive.user(capsys, "disable", "doc")
    assert code == 0 and "disabled doc" in out
    assert _account(archive, "doc").disabled
    assert _login(archive, "doc", password) is not LoginVerdict.ACCEPTED


def test_user_disable_refuses_an_unknown_user(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = archive.user(capsys, "disable", "nobody")
    assert code == 2
    assert "nobody" in _one_line_error(err)


# user enable and unlock (issues #11 and #15).

ATTACKER = "203.0.113.66"


def _lock(archive: Archive, name: str) -> None:
    """Lock `name` with an attacker's failures (that address stays in its own back-off)."""
    with _accounts(archive) as accounts:
        for _ in range(LOCKOUT_AFTER):
            accounts.record_failure(name, ATTACKER)
    assert _account(archive, name).locked


def _security_alerts(archive: Archive) -> list[dict[str, object]]:
    with _opened(archive) as pacs:
        return [
            {"by": r.user_id, **json.loads(r.details)}
            for r in pacs.audit.records()
            if r.event_type == USER_CHANGED
        ]


def test_user_unlock_lifts_the_lockout_of_the_last_admin_on_the_box(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    _lock(archive, "admin")
    code, out, _ = archive.user(capsys, "unlock", "admin")
    assert code == 0 and "unlocked admin" in out
    assert not _account(archive, "admin").locked
    with _accounts(archive) as accounts:
        check = accounts.check_password("admin", archive.admin_password, ADDRESS)
    assert check.verdict is LoginVerdict.ACCEPTED and not check.deferred


def test_user_unlock_is_audited_by_the_accounts_service(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    _lock(archive, "admin")
    assert archive.user(capsys, "unlock", "admin")[0] == 0
    last = _security_alerts(archive)[-1]
    assert last["what"] == "lockout lifted" and last["user"] == "admin"
    assert str(last["by"]).endswith("@cli")


def test_user_unlock_ends_the_back_off_of_the_account_at_the_attackers_address(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(archive, capsys, "doc")
    with _accounts(archive) as accounts:
        for _ in range(3):
            accounts.record_failure("doc", ADDRESS)
        assert accounts.retry_after("doc", ADDRESS) > 0
    assert archive.user(capsys, "unlock", "doc")[0] == 0
    with _accounts(archive) as accounts:
        assert accounts.retry_after("doc", ADDRESS) == 0


def test_user_unlock_refuses_an_unknown_user(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = archive.user(capsys, "unlock", "nobody")
    assert code == 2
    assert "nobody" in _one_line_error(err)


def test_user_enable_enables_a_disabled_user(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    password = _add(archive, capsys, "doc")
    assert archive.user(capsys, "disable", "doc")[0] == 0
    code, out, _ = archive.user(capsys, "enable", "doc")
    assert code == 0 and "enabled doc" in out
    assert not _account(archive, "doc").disabled
    assert _login(archive, "doc", password) is LoginVerdict.ACCEPTED
    last = _security_alerts(archive)[-1]
    assert last["what"] == "user enabled" and last["user"] == "doc"


def test_user_enable_refuses_an_unknown_user(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = archive.user(capsys, "enable", "nobody")
    assert code == 2
    assert "nobody" in _one_line_error(err)


def test_user_reset_of_a_disabled_user_says_it_stays_disabled(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(archive, capsys, "doc")
    assert archive.user(capsys, "disable", "doc")[0] == 0
    code, out, _ = archive.user(capsys, "reset", "doc")
    assert code == 0 and "doc is disabled and cannot log in: run pacs user enable doc" in out
    assert _account(archive, "doc").disabled


# user reset.


def test_user_reset_prints_a_new_password_and_the_old_one_stops_working(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _add(archive, capsys, "doc")
    code, out, _ = archive.user(capsys, "reset", "doc")
    assert code == 0
    new = _password_in(out)
    assert new != old
    assert _login(archive, "doc", new) is LoginVerdict.ACCEPTED
    assert _login(archive, "doc", old) is LoginVerdict.WRONG


def test_user_reset_lifts_a_lockout(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    _add(archive, capsys, "doc")
    with _accounts(archive) as accounts:
        for _ in range(LOCKOUT_AFTER):  # from elsewhere: that address stays in its back-off
            accounts.record_failure("doc", "192.0.2.66")
    assert _account(archive, "doc").locked
    code, out, _ = archive.user(capsys, "reset", "doc")
    assert code == 0
    assert not _account(archive, "doc").locked
    assert _login(archive, "doc", _password_in(out)) is LoginVerdict.ACCEPTED


def test_user_reset_with_totp_removes_the_enrolled_second_factor(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(archive, capsys, "doc")
    _enrol(archive, "doc")
    assert _account(archive, "doc").totp_enrolled
    assert archive.user(capsys, "reset", "doc", "--totp")[0] == 0
    doc = _account(archive, "doc")
    assert not doc.totp_enrolled and doc.recovery_codes_left == 0


def test_user_reset_without_totp_keeps_the_second_factor(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(archive, capsys, "doc")
    _enrol(archive, "doc")
    assert archive.user(capsys, "reset", "doc")[0] == 0
    assert _account(archive, "doc").totp_enrolled


def test_user_reset_refuses_an_unknown_user(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = archive.user(capsys, "reset", "nobody")
    assert code == 2
    assert "nobody" in _one_line_error(err)
    assert "password" not in out


# The audit trail.


def test_first_admin_is_audited_as_a_user_change(archive: Archive) -> None:
    assert [change["user"] for change in _user_changes(archive)] == ["admin"]


def test_user_add_is_audited(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    _add(archive, capsys, "doc")
    changes = _user_changes(archive)
    assert len(changes) == 2
    assert changes[-1]["user"] == "doc"


def test_user_disable_is_audited(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    _add(archive, capsys, "doc")
    assert archive.user(capsys, "disable", "doc")[0] == 0
    changes = _user_changes(archive)
    assert len(changes) == 3
    assert changes[-1]["user"] == "doc" and "disabled" in str(changes[-1]["what"])


def test_user_reset_is_audited(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    _add(archive, capsys, "doc")
    assert archive.user(capsys, "reset", "doc", "--totp")[0] == 0
    changes = _user_changes(archive)
    assert len(changes) == 3
    assert changes[-1]["user"] == "doc" and "second factor" in str(changes[-1]["what"])


def test_refused_user_change_is_not_audited(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    assert archive.user(capsys, "disable", "admin")[0] == 2
    assert archive.user(capsys, "reset", "nobody")[0] == 2
    assert len(_user_changes(archive)) == 1
