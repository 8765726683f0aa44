"""``pacs user reset`` and ``unlock`` of a disabled account: they do not enable it, and say so truly.

Reset gives a new one-time password and lifts the lockout; whether the person may log in
again is a separate decision (``pacs user enable NAME``), which the output names in full.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pacs.core.accounts import Accounts
from pacs.core.config import load_settings
from pacs.core.context import initialise, open_pacs
from tests.cli.cli_helpers import _run


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An archive with the user "nurse" (physician)."""
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    pacs = open_pacs(settings)
    try:
        Accounts(pacs.database, pacs.keyring, audit=pacs.audit).add("nurse", frozenset({"physician"}))
    finally:
        pacs.close()
    return settings.data_dir


def _disabled(data: Path) -> bool:
    pacs = open_pacs(load_settings(data, {}))
    try:
        account = Accounts(pacs.database, pacs.keyring, audit=pacs.audit).get("nurse")
        assert account is not None
        return account.disabled
    finally:
        pacs.close()


def test_reset_of_a_disabled_account_keeps_it_disabled_and_names_the_enable_command(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "user", "disable", "nurse", "--data", str(data))[0] == 0
    code, out, _ = _run(capsys, "user", "reset", "nurse", "--data", str(data))
    assert code == 0
    first = out.splitlines()[0]
    assert first == (
        "nurse: password reset, lockout lifted; nurse is disabled and cannot log in: "
        "run pacs user enable nurse"
    )
    assert _disabled(data)
    code, out, _ = _run(capsys, "user", "enable", "nurse", "--data", str(data))
    assert (code, out.strip()) == (0, "enabled nurse")
    assert not _disabled(data)


def test_reset_of_an_enabled_account_says_only_what_it_did(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "user", "reset", "nurse", "--data", str(data))
    assert code == 0
    assert out.splitlines()[0] == "nurse: password reset, lockout lifted"


def test_unlock_of_a_disabled_account_names_the_enable_command(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "user", "disable", "nurse", "--data", str(data))[0] == 0
    code, out, _ = _run(capsys, "user", "unlock", "nurse", "--data", str(data))
    assert (code, out.strip()) == (
        0,
        "unlocked nurse; nurse is disabled and cannot log in: run pacs user enable nurse",
    )
    assert _disabled(data)
