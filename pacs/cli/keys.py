"""``pacs keys rotate|list`` and ``pacs cert renew``: the archive's keys and its server certificate."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from pacs.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Subcommands,
    actor,
    add_command,
    add_group,
    add_quiet,
    count_progress,
    opened,
)
from pacs.core.context import SERVER_CERT
from pacs.ops import keys
from storage import rotation


def cmd_keys_rotate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Re-wrap every data key under a new KEK, or finish an interrupted rotation."""
    with opened(args, environ) as pacs:
        current, left, resumed = keys.start_rotation(pacs, user=actor())
        if resumed:
            print(f"resuming the rotation to key-encryption key {current}: {left} data keys left")
        else:
            print(f"new key-encryption key {current} in {pacs.keyring.directory}")
        with count_progress("re-wrapping data keys", quiet=args.quiet) as progress:
            task = progress.add_task("rewrap", total=left)
            done, left = keys.finish_rotation(
                pacs, current, user=actor(), on_batch=lambda n: progress.advance(task, n)
            )
    if left:
        print(f"{done} data keys re-wrapped; {left} objects stored meanwhile are still under an older key")
        print("run 'pacs keys rotate' again to finish")
        return EXIT_FAILED
    print(f"{done} data keys re-wrapped; every object is now under key-encryption key {current}")
    print("no image was rewritten; keep a copy of the key directory offline")
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Show the KEK versions and how many data keys each wraps."""
    with opened(args, environ) as pacs:
        usage = rotation.key_usage(pacs.database)
        versions = pacs.keyring.versions
    print(f"{'KEK':>4}  {'data keys':>10}  note")
    for version in versions:
        notes = []
        if version == versions[-1]:
            notes.append("current")
        if version == 1:
            notes.append("also derives the index, TOTP and session keys")
        print(f"{version:>4}  {usage.get(version, 0):>10}  {', '.join(notes)}")
    stale = sum(count for version, count in usage.items() if version < versions[-1])
    if stale:
        print(f"{stale} data keys still under an older KEK: run 'pacs keys rotate' to finish")
        return EXIT_FAILED
    return EXIT_OK


def cmd_cert_renew(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Issue a new server certificate from the archive's CA."""
    with opened(args, environ) as pacs:
        certificate = keys.renew_certificate(pacs, user=actor())
        settings = pacs.settings
    print(
        f"new server certificate for {settings.server.hostname}, valid until "
        f"{certificate.not_valid_after_utc:%Y-%m-%d}, in {settings.tls_dir / SERVER_CERT}"
    )
    print("restart pacs serve to use it; modalities and browsers that trust the CA need no change")
    return EXIT_OK


def register(commands: Subcommands) -> None:
    """Add ``pacs keys`` and ``pacs cert`` to the parser."""
    key_actions = add_group(commands, "keys", "rotate or list the key-encryption keys")
    rotate = add_command(
        key_actions,
        "rotate",
        cmd_keys_rotate,
        "new key-encryption key, every data key re-wrapped (resumable)",
    )
    add_quiet(rotate)
    add_command(
        key_actions, "list", cmd_keys_list, "key-encryption key versions and the data keys each wraps"
    )
    cert_actions = add_group(commands, "cert", "renew the archive's server certificate")
    add_command(
        cert_actions,
        "renew",
        cmd_cert_renew,
        "new server certificate from the archive's CA, for [server] hostname",
    )
