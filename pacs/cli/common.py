"""What every ``pacs`` command shares: the data directory, the actor, progress bars, passphrases.

A command opens the archive with :func:`opened` (closed again however the command ends)
and raises :class:`CommandError` for input it cannot act on; :mod:`pacs.cli.main` turns
that, like every other :class:`~storage.errors.PacsError`, into one line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from pacs.core.accounts import check_password_policy
from pacs.core.config import load_settings
from pacs.core.context import Context, open_pacs
from storage.errors import PacsError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]
Subcommands = Any  # argparse's private _SubParsersAction


class CommandError(PacsError):
    """A command cannot run as asked; the message is shown to the admin."""


def actor() -> str:
    """Who runs this command, as the audit trail names them (``user@cli``)."""
    try:
        return f"{getpass.getuser()}@cli"
    except (KeyError, OSError):
        return f"uid{os.getuid()}@cli"


def data_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> Path:
    """The archive's directory: ``--data DIR``, else ``PACS_DATA``."""
    value = args.data or environ.get("PACS_DATA")
    if not value:
        raise CommandError("no data directory: give --data DIR or set PACS_DATA")
    return Path(value)


@contextmanager
def opened(args: argparse.Namespace, environ: Mapping[str, str]) -> Iterator[Context]:
    """The archive of ``--data``, open for the length of the ``with`` block."""
    pacs = open_pacs(load_settings(data_dir(args, environ), environ), actor=actor())
    try:
        yield pacs
    finally:
        pacs.close()


def add_command(commands: Subcommands, name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
    """A subcommand that runs `handler` on the archive given by ``--data``."""
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help_, description=help_)
    sub.add_argument("--data", metavar="DIR", help="data directory (default: $PACS_DATA)")
    sub.set_defaults(handler=handler)
    return sub


def add_group(commands: Subcommands, name: str, help_: str) -> Subcommands:
    """A command with actions of its own (``pacs NAME ACTION``)."""
    group = commands.add_parser(name, help=help_)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """The ``--quiet`` flag of the commands with a progress bar."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_passphrase_file(parser: argparse.ArgumentParser) -> None:
    """The ``--passphrase-file`` option of backup and restore."""
    parser.add_argument(
        "--passphrase-file", metavar="FILE", help="read the passphrase from FILE's first line (- for stdin)"
    )


def count_progress(label: str, *, quiet: bool = False) -> Progress:
    """A progress bar on stderr counting items."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )


def bytes_progress(label: str, quiet: bool) -> tuple[Progress, Callable[[int, int], None]]:
    """A progress bar on stderr counting bytes, and the callback that moves it."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )
    task = progress.add_task(label, total=None)
    return progress, lambda done, total: progress.update(task, completed=done, total=total)


def passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    """The backup passphrase: the first line of --passphrase-file, or asked for on the terminal.

    ``--passphrase-file -`` reads standard input as it is inherited (a pipe from root
    need not be reopened by the service user). With `confirm` (a new backup) it must
    pass the password policy.
    """
    if args.passphrase_file == "-":
        secret = sys.stdin.readline().rstrip("\r\n")
    elif args.passphrase_file:
        try:
            lines = Path(args.passphrase_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the passphrase file {args.passphrase_file}: {exc}") from None
        secret = lines[0] if lines else ""
    elif sys.stdin.isatty():
        secret = getpass.getpass("backup passphrase: ")
        if confirm and getpass.getpass("again: ") != secret:
            raise CommandError("the two passphrases differ")
    else:
        raise CommandError("no passphrase: give --passphrase-file FILE, or run in a terminal")
    if confirm:
        try:
            check_password_policy(secret)
        except PacsError as exc:
            raise CommandError(f"backup passphrase: {exc}") from None
    elif not secret:
        raise CommandError("the passphrase is empty")
    return secret
