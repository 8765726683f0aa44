"""Every user error of every ``pacs`` command is one line on stderr, with no traceback.

A table of bad invocations (an unknown AE title or user, a bad CIDR, port or role, an
unreadable or wrong file, a bad or unreachable index URL, a missing data directory) runs
against one archive made by :func:`pacs.core.context.initialise`; each must end with exit
status 2 and exactly one ``pacs: error: ...`` line that names what was wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.accounts import Accounts
from pacs.core.context import initialise, open_pacs
from tests.cli.cli_helpers import _one_line_error, _run

# (arguments, with DATA for the archive and TMP for a scratch directory; a word the line must hold)
BAD_INVOCATIONS: list[tuple[list[str], str]] = [
    (["modality", "remove", "NOPE", "--data", "DATA"], "'NOPE'"),
    (["modality", "add", "CT1", "--host", "10.0.0.0/33", "--issue-cert", "TMP/o1", "--data", "DATA"], "/33"),
    (
        ["modality", "add", "CT1", "--host", "not_a_host", "--issue-cert", "TMP/o2", "--data", "DATA"],
        "not_a_host",
    ),
    (
        ["modality", "add", "CT1", "--host", "10.0.0.5", "--cert", "TMP/missing.pem", "--data", "DATA"],
        "missing.pem",
    ),
    (["modality", "add", "CT1", "--host", "10.0.0.5", "--cert", "TMP", "--data", "DATA"], "TMP"),
    (
        ["modality", "add", "CT1", "--host", "10.0.0.5", "--cert", "TMP/notes.txt", "--data", "DATA"],
        "notes.txt",
    ),
    (
        [
            "modality",
            "add",
            "CT1",
            "--host",
            "10.0.0.5",
            "--port",
            "99999",
            "--issue-cert",
            "TMP/o3",
            "--data",
            "DATA",
        ],
        "99999",
    ),
    (
        ["modality", "add", "A" * 17, "--host", "10.0.0.5", "--issue-cert", "TMP/o4", "--data", "DATA"],
        "AE title",
    ),
    (
        [
            "modality",
            "add",
            "CT1",
            "--host",
            "10.0.0.5",
            "--allow",
            "fly",
            "--issue-cert",
            "TMP/o5",
            "--data",
            "DATA",
        ],
        "fly",
    ),
    (["export", "1.2.3.4", "TMP/out", "--data", "DATA"], "1.2.3.4"),
    (["user", "reset", "nobody", "--data", "DATA"], "'nobody'"),
    (["user", "enable", "nobody", "--data", "DATA"], "'nobody'"),
    (["user", "unlock", "nobody", "--data", "DATA"], "'nobody'"),
    (["user", "add", "x", "--role", "wizard", "--data", "DATA"], "wizard"),
    (["user", "add", "bad name", "--role", "admin", "--data", "DATA"], "bad name"),
    (["user", "add", "boss", "--role", "admin", "--data", "DATA"], "boss"),
    (["backup", "TMP/b.tar", "--passphrase-file", "TMP/missing", "--data", "DATA"], "missing"),
    (["audit", "export", "--output", "TMP/no/such/dir/f", "--data", "DATA"], "TMP/no/such/dir/f"),
    (["verify", "--data", "TMP/nowhere"], "nowhere"),
    (["verify"], "--data"),
    (["init", "--data", "DATA"], "already"),
    (["init", "--data", "TMP/n1", "--ae-title", "A" * 17], "AE title"),
    (["init", "--data", "TMP/n2", "--hostname", "bad host"], "bad host"),
    (["init", "--data", "TMP/n3", "--db", "BADURL"], "BADURL"),
    (["init", "--data", "TMP/n4", "--db", "postgresql://bad:url:here"], "URL"),
    (["init", "--data", "TMP/n5", "--db", "postgresql://nobody@127.0.0.1:1/x"], "127.0.0.1:1"),
    (["init", "--data", "TMP/n6", "--db", "postgresql://nosuchrole@127.0.0.1:5432/test"], "nosuchrole"),
    (["study", "list", "--date", "2024-13-45", "--data", "DATA"], "2024-13-45"),
    (["study", "list", "--date", "20240101-2023", "--data", "DATA"], "20240101-2023"),
    (["study", "show", "1.2.3.4", "--data", "DATA"], "1.2.3.4"),
    (["study", "forward", "1.2.3.4", "--to", "NOPE", "--data", "DATA"], "NOPE"),
]
# Usage errors, caught by the argument parser: one line too, naming the command and its --help.
BAD_USAGE: list[tuple[list[str], str]] = [
    (["nosuch"], "pacs: error: argument COMMAND: invalid choice: 'nosuch'"),
    (
        ["user", "add", "x", "--data", "DATA"],
        "pacs user add: error: the following arguments are required: --role",
    ),
    (
        ["study", "delete", "1.2.3", "--data", "DATA"],
        "pacs study delete: error: the following arguments are required",
    ),
    (
        ["modality", "add", "X", "--host", "10.0.0.5", "--data", "DATA"],
        "pacs modality add: error: one of the",
    ),
    (
        ["modality", "add", "X", "--host", "10.0.0.5", "--port", "ten", "--cert", "c", "--data", "DATA"],
        "'ten'",
    ),
]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An archive (SQLCipher index) with a user "boss", and a scratch directory holding a text file."""
    root = tmp_path_factory.mktemp("cli-errors")
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    pacs = open_pacs(settings)
    try:
        Accounts(pacs.database, pacs.keyring, audit=pacs.audit).add("boss", frozenset({"admin"}))
    finally:
        pacs.close()
    scratch = root / "scratch"
    scratch.mkdir()
    (scratch / "notes.txt").write_text("not a certificate\n")
    return settings.data_dir, scratch


def _filled(argv: list[str], data: Path, scratch: Path) -> list[str]:
    return [arg.replace("DATA", str(data)).replace("TMP", str(scratch)) for arg in argv]


@pytest.mark.parametrize(
    ("argv", "names"), BAD_INVOCATIONS, ids=[" ".join(a[:3]) for a, _ in BAD_INVOCATIONS]
)
def test_a_user_error_is_one_line_naming_what_was_wrong(
    archive: tuple[Path, Path], capsys: pytest.CaptureFixture[str], argv: list[str], names: str
) -> None:
    data, scratch = archive
    code, _, err = _run(capsys, *_filled(argv, data, scratch))
    assert code == 2, err
    line = _one_line_error(err)
    assert _filled([names], data, scratch)[0] in line, line


def test_an_init_refused_for_its_index_url_leaves_no_directory(
    archive: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, scratch = archive
    code, _, err = _run(
        capsys, "init", "--data", str(scratch / "n7"), "--db", "postgresql://nobody@127.0.0.1:1/x"
    )
    assert code == 2 and "cannot be reached" in _one_line_error(err)
    assert not (scratch / "n7").exists()


@pytest.mark.parametrize(("argv", "says"), BAD_USAGE, ids=[" ".join(a[:3]) for a, _ in BAD_USAGE])
def test_a_usage_error_is_one_line_with_where_to_look(
    archive: tuple[Path, Path], capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    data, scratch = archive
    with pytest.raises(SystemExit) as exited:
        main(_filled(argv, data, scratch), environ={})
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exited.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert says in lines[0] and lines[0].endswith("--help)"), lines[0]
