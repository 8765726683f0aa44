"""``pacs init``, ``import``, ``export``, ``verify``, ``migrate`` and ``serve``: the archive itself."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from pacs.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    Subcommands,
    actor,
    add_command,
    add_quiet,
    count_progress,
    data_dir,
    opened,
)
from pacs.core import events
from pacs.core.accounts import Accounts
from pacs.core.audit import Action
from pacs.core.config import Settings, check_ae_title, load_settings
from pacs.core.context import INCOMING, initialise, open_pacs
from pacs.core.hostnames import check_hostname
from pacs.ops import exporting, importer
from pacs.ops.verify import verify
from pacs.serve import service


def cmd_init(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Create a new archive."""
    problem = check_ae_title(args.ae_title)
    if problem:
        raise CommandError(f"AE title {args.ae_title!r} {problem}")
    problem = check_hostname(args.hostname)
    if problem:
        raise CommandError(f"host name {args.hostname!r} {problem}")
    settings = initialise(
        data_dir(args, environ),
        ae_title=args.ae_title,
        hostname=args.hostname,
        db_url=args.db or "",
        key_dir=args.key_dir or "",
        user=actor(),
    )
    print(f"Initialised a PACS in {settings.data_dir}")
    _print_addresses(load_settings(settings.data_dir, environ))
    print(f"  index          {'PostgreSQL' if settings.storage.db_url else 'encrypted SQLite (SQLCipher)'}")
    print(f"  keys           {settings.key_dir} (keep a copy offline: without it nothing can be read)")
    pacs = open_pacs(settings)
    try:
        account, password = Accounts(pacs.database, pacs.keyring, audit=pacs.audit).add(
            args.admin, frozenset({"admin"})
        )
        pacs.audit.append(
            events.user_changed(
                Action.CREATE, account.name, "first admin created", by=actor(), roles=account.roles
            )
        )
    finally:
        pacs.close()
    print(f"  first admin    {account.name}, one-time password: {password}")
    print("                 (shown once; it must be changed, and TOTP enrolled, at the first login)")
    return EXIT_OK


def _print_addresses(settings: Settings) -> None:
    """Print the AE title, the ports `settings` (with the environment's overrides) use, and the URL."""
    dicom, hostname = settings.dicom, settings.server.hostname
    plaintext = f", plaintext port {dicom.plaintext_port} for legacy nodes" if dicom.plaintext_port else ""
    print(f"  AE title       {dicom.ae_title} (DICOM TLS port {dicom.port}{plaintext})")
    print(f"  web            https://{hostname}:{settings.web.port}/")
    others = ", ".join(name for name in ("localhost", "127.0.0.1", "::1") if name != hostname)
    print(f"  certificate    for {hostname} (and {others}): the name doctors and modalities must use")


def cmd_import(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Import files, folders and DICOMDIRs."""
    with opened(args, environ) as pacs:
        files, failures = importer.collect(Path(p) for p in args.paths)
        progress = count_progress("importing", quiet=args.quiet)
        with progress:
            task = progress.add_task("import", total=len(files))

            def advance(path: Path, failure: importer.Failure | None) -> None:
                if failure is not None:
                    print(f"failed {failure.path}: {failure.reason}", file=sys.stderr)
                progress.advance(task)

            summary = importer.run(pacs.archive, pacs.audit, files, user=actor(), on_progress=advance)
    summary.failures[:0] = failures
    for failure in failures:
        print(f"failed {failure.path}: {failure.reason}", file=sys.stderr)
    print(
        f"{summary.stored} stored, {summary.duplicates} already present, "
        f"{summary.new_versions} new versions, {len(summary.failures)} failed, "
        f"in {len(summary.studies)} studies"
    )
    return EXIT_FAILED if summary.failures else EXIT_OK


def cmd_export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Write decrypted copies of a study's objects."""
    out = Path(args.outdir)
    with opened(args, environ) as pacs:
        result = exporting.export_study(pacs, args.study_uid, out, user=actor(), original=args.original)
    kind = "objects as received" if args.original else "objects"
    print(f"exported {result.instances} {kind} in {result.series} series to {out}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Re-authenticate every stored object and check the index."""
    with opened(args, environ) as pacs:
        report = verify(pacs, user=actor())
    sweep = report.sweep
    if sweep.reindexed:
        print(f"{len(sweep.reindexed)} durable objects the index had lost: indexed again")
    if sweep.removed:
        print(f"{len(sweep.removed)} incomplete blobs from interrupted writes: removed")
    for sop_uid, problem in report.damaged:
        print(f"DAMAGED {sop_uid}: {problem}")
    for problem in report.inconsistent:
        print(f"INDEX {problem}")
    for blob_id, problem in sweep.unreadable:
        print(f"UNREADABLE blob {blob_id} (kept, not indexed): {problem}")
    if leftovers := report.leftovers:
        state = "removed" if report.cleaned else "left in place while another process is writing"
        print(f"{leftovers} blobs being written or left partial by interrupted writes: {state}")
    if report.spool_files:
        state = "removed" if report.cleaned else "left in place while pacs serve runs"
        count = len(report.spool_files)
        print(f"{count} objects left unencrypted in {INCOMING}/ by a stopped server: {state}")
    print(f"{report.checked} objects checked: " + ("all intact" if report.ok else "DAMAGE FOUND"))
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_migrate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Bring the index schema up to this version's (every command does so; this one says so)."""
    with opened(args, environ) as pacs:
        migrated, current = pacs.migrated, pacs.database.revision()
    if migrated is None:
        print(f"index schema is current (revision {current})")
    else:
        print(f"index schema migrated from revision {migrated[0]} to {migrated[1]}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the DICOM service in the foreground until Ctrl-C or SIGTERM."""
    settings = load_settings(data_dir(args, environ), environ)
    service.run(settings, user=actor(), announce=lambda line: print(line, flush=True))
    return EXIT_OK


def register(commands: Subcommands) -> None:
    """Add the archive's commands to the parser."""
    init = add_command(commands, "init", cmd_init, "create a new archive in an empty or new directory")
    init.add_argument("--ae-title", default="PACS", help="our AE title (default PACS)")
    init.add_argument(
        "--hostname",
        default="localhost",
        help="the name or IP address doctors and modalities use to reach this server (default localhost)",
    )
    init.add_argument("--db", metavar="URL", help="PostgreSQL URL instead of the embedded encrypted SQLite")
    init.add_argument("--admin", default="admin", help="name of the first admin user (default admin)")
    init.add_argument(
        "--key-dir", metavar="DIR", help="keep the keys here, e.g. /etc/pacs/keys (default DIR/keys)"
    )
    imp = add_command(
        commands, "import", cmd_import, "import DICOM files, folders and patient CDs (DICOMDIR)"
    )
    imp.add_argument("paths", nargs="+", metavar="PATH")
    add_quiet(imp)
    exp = add_command(commands, "export", cmd_export, "write decrypted copies of a study (audited)")
    exp.add_argument("study_uid", metavar="STUDY_UID")
    exp.add_argument("outdir", metavar="OUTDIR")
    exp.add_argument(
        "--original", action="store_true", help="write each object as it was received, before any correction"
    )
    add_command(commands, "verify", cmd_verify, "re-authenticate every stored object and the index")
    add_command(
        commands, "migrate", cmd_migrate, "apply the index schema migrations of this version (audited)"
    )
    add_command(
        commands, "serve", cmd_serve, "run the DICOM TLS listener in the foreground (Ctrl-C stops it)"
    )
