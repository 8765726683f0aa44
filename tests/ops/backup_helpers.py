"""Shared pieces of the backup and restore tests: a passphrase, an archive to fill, the two commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.accounts import Accounts
from pacs.core.config import Settings
from pacs.core.context import open_pacs
from tests.data.make_series import make_ct_series

PASSPHRASE = "plum orchard lantern 1907"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={})
    out, err = capsys.readouterr()
    return code, out, err


def _fill(settings: Settings, tmp_path: Path) -> dict[str, bytes]:
    make_ct_series(tmp_path / "ct", slices=12, rows=32, columns=32)
    pacs = open_pacs(settings)
    try:
        stored = {}
        for path in sorted((tmp_path / "ct").glob("*.dcm")):
            stored[pacs.archive.store(path).sop_uid] = path.read_bytes()
        Accounts(pacs.database, pacs.keyring, audit=pacs.audit).add("dr.who", frozenset({"physician"}))
    finally:
        pacs.close()
    return stored


def _backup(settings: Settings, out: Path, passphrase_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output, err = _run(
        capsys,
        "backup",
        str(out),
        "--passphrase-file",
        str(passphrase_file),
        "--quiet",
        "--data",
        str(settings.data_dir),
    )
    assert code == 0, err
    assert output.startswith("backed up ")


def _restore(
    backup: Path, target: Path, passphrase_file: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    return _run(
        capsys,
        "restore",
        str(backup),
        "--passphrase-file",
        str(passphrase_file),
        "--quiet",
        "--data",
        str(target),
        *extra,
    )
