"""``pacs backup`` and ``pacs restore``: encrypted snapshots of a running archive, and their way back."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from pacs.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Subcommands,
    actor,
    add_command,
    add_passphrase_file,
    add_quiet,
    bytes_progress,
    data_dir,
    opened,
    passphrase,
)
from pacs.ops import backup, restore


def cmd_backup(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Write an encrypted, authenticated snapshot of the running archive."""
    out = Path(args.outfile)
    secret = passphrase(args, confirm=True)
    with opened(args, environ) as pacs:
        progress, update = bytes_progress("backing up", args.quiet)
        with progress:
            summary = backup.backup(pacs, out, secret, by=actor(), progress=update)
    print(
        f"backed up {summary.objects} objects ({summary.size // 2**20} MiB) to {out}, "
        f"snapshot of {summary.snapshot_at}"
    )
    print("the file holds the keys too: keep the passphrase apart from it, and a copy off the appliance")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Restore a backup into a new data directory, then verify it."""
    target = data_dir(args, environ)
    secret = passphrase(args, confirm=False)
    progress, check = bytes_progress("checking", args.quiet)
    writing = progress.add_task("restoring", total=None, visible=False)
    with progress:
        summary = restore.restore(
            Path(args.infile),
            target,
            secret,
            key_dir=args.key_dir or "",
            db_url=args.db,
            by=actor(),
            progress=check,
            write_progress=lambda done, total: progress.update(
                writing, completed=done, total=total, visible=True
            ),
        )
    for problem in summary.damaged:
        print(f"DAMAGED {problem}")
    for problem in summary.audit_problems:
        print(f"AUDIT {problem}")
    print(f"restored the backup of {summary.created_at} into {summary.settings.data_dir}")
    print(f"verify: {summary.objects} objects checked: " + ("all intact" if summary.ok else "DAMAGE FOUND"))
    return EXIT_OK if summary.ok else EXIT_FAILED


def register(commands: Subcommands) -> None:
    """Add ``pacs backup`` and ``pacs restore`` to the parser."""
    back = add_command(
        commands, "backup", cmd_backup, "write an encrypted snapshot of the archive (while it runs)"
    )
    back.add_argument("outfile", metavar="OUTFILE")
    add_passphrase_file(back)
    add_quiet(back)
    rest = add_command(
        commands, "restore", cmd_restore, "restore a backup into a new data directory and verify it"
    )
    rest.add_argument("infile", metavar="INFILE")
    add_passphrase_file(rest)
    rest.add_argument(
        "--key-dir", metavar="DIR", help="put the keys here instead of where the backup had them"
    )
    rest.add_argument("--db", metavar="URL", help="restore the index into this empty PostgreSQL database")
    add_quiet(rest)
