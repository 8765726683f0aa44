"""The ``pacs`` entry point: the parser of every command, and errors shown as one line.

Every error a user can cause is a :class:`~storage.errors.PacsError`; it ends the command
with ``pacs: error: MESSAGE`` on stderr and exit status 2, never a traceback. A usage error
(a missing or unknown argument) is one line too: ``pacs CMD: error: MESSAGE (see pacs CMD --help)``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from pacs.cli import alerts, archive, audit, backup, daily, keys, nodes, study, users
from pacs.cli.common import EXIT_USAGE
from storage.errors import PacsError


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line too (with where to look), exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` on stderr and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``pacs`` command (its subcommands' parsers are of the same class)."""
    parser = OneLineParser(prog="pacs", description="Hardened mini-PACS for small practices.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in (archive, audit, backup, nodes, keys, users, study, daily, alerts):
        area.register(commands)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one ``pacs`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    os.umask(0o077)
    try:
        return int(args.handler(args, environ))
    except PacsError as exc:
        print(f"pacs: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileExistsError as exc:
        print(f"pacs: error: {exc.filename} already exists; not overwriting it", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"pacs: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pacs: interrupted", file=sys.stderr)
        return 130
