"""The ``pacs`` command line: the admin's interface to an archive.

Every command takes ``--data DIR`` (or ``PACS_DATA``), builds the settings once and
passes them on. Bad input ends with a one-line ``pacs: error: ...`` on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from pacs.core import atna, checkpoints, pki
from pacs.core.accounts import Account, AccountError, Accounts, check_password_policy, parse_roles
from pacs.core.audit import Action, AuditEvent, EventID, EventType, Outcome
from pacs.core.config import ConfigError, check_ae_title, load_settings
from pacs.core.context import (
    CA_CERT,
    CA_KEY,
    INCOMING,
    SERVER_CERT,
    DataDirError,
    Pacs,
    initialise,
    open_pacs,
    renew_server_certificate,
)
from pacs.core.nodes import (
    CLI_AUTHORITY,
    EnrolmentError,
    NodeRegistry,
    check_enrolment,
    issue_node_certificate,
    node_event,
    parse_permissions,
    phi_grant,
)
from pacs.ops import backup, importer, selfcheck
from pacs.ops.reindex import audit_sweep
from pacs.serve import service
from storage import rotation
from storage.archive import ArchiveError, InstanceInfo
from storage.crypto import IntegrityError
from storage.keys import KeyFileError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A command cannot run as asked; the message is shown to the admin."""


def _actor() -> str:
    try:
        return f"{getpass.getuser()}@cli"
    except (KeyError, OSError):
        return f"uid{os.getuid()}@cli"


def _data_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> Path:
    value = args.data or environ.get("PACS_DATA")
    if not value:
        raise CommandError("no data directory: give --data DIR or set PACS_DATA")
    return Path(value)


def _open(args: argparse.Namespace, environ: Mapping[str, str]) -> Pacs:
    return open_pacs(load_settings(_data_dir(args, environ), environ), actor=_actor())


def cmd_init(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Create a new archive."""
    problem = check_ae_title(args.ae_title)
    if problem:
        raise CommandError(f"AE title {args.ae_title!r} {problem}")
    data_dir = _data_dir(args, environ)
    settings = initialise(
        data_dir,
        ae_title=args.ae_title,
        hostname=args.hostname,
        db_url=args.db or "",
        key_dir=args.key_dir or "",
        user=_actor(),
    )
    print(f"Initialised a PACS in {settings.data_dir}")
    print(f"  AE title       {settings.dicom.ae_title} (DICOM TLS port {settings.dicom.port})")
    print(f"  web            https://{settings.server.hostname}:{settings.web.port}/")
    print(f"  index          {'PostgreSQL' if settings.storage.db_url else 'encrypted SQLite (SQLCipher)'}")
    print(f"  keys           {settings.key_dir} (keep a copy offline: without it nothing can be read)")
    pacs = open_pacs(settings)
    try:
        account, password = Accounts(pacs.database, pacs.keyring).add(args.admin, frozenset({"admin"}))
        pacs.audit.append(_user_event(Action.CREATE, account, "first admin created"))
    finally:
        pacs.close()
    print(f"  first admin    {account.name}, one-time password: {password}")
    print("                 (shown once; it must be changed, and TOTP enrolled, at the first login)")
    return EXIT_OK


def cmd_import(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Import files, folders and DICOMDIRs."""
    pacs = _open(args, environ)
    try:
        files, failures = importer.collect(Path(p) for p in args.paths)
        progress = _progress("importing", quiet=args.quiet)
        with progress:
            task = progress.add_task("import", total=len(files))

            def advance(path: Path, failure: importer.Failure | None) -> None:
                if failure is not None:
                    print(f"failed {failure.path}: {failure.reason}", file=sys.stderr)
                progress.advance(task)

            summary = importer.run(pacs.archive, pacs.audit, files, user=_actor(), on_progress=advance)
    finally:
        pacs.close()
    summary.failures[:0] = failures
    for failure in failures:
        print(f"failed {failure.path}: {failure.reason}", file=sys.stderr)
    print(
        f"{summary.stored} stored, {summary.duplicates} already present, "
        f"{summary.new_versions} new versions, {len(summary.failures)} failed, "
        f"in {len(summary.studies)} studies"
    )
    return EXIT_FAILED if summary.failures else EXIT_OK


def _export_one(pacs: Pacs, info: InstanceInfo, target: Path) -> None:
    """Write the decrypted object to `target` (0600), which appears only once it is whole.

    Blobs are authenticated chunk by chunk, so a damaged one fails part-way: what was
    written of it is removed, never left looking like a complete file.
    """
    partial = target.with_name(f".{target.name}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink, pacs.archive.blobs.open(info.ref) as source:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
        os.link(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def cmd_export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Write decrypted copies of a study's objects."""
    pacs = _open(args, environ)
    try:
        instances = pacs.archive.study_instances(args.study_uid)
        out = Path(args.outdir)
        series_dirs: dict[str, Path] = {}
        written = 0
        try:
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
            for number, info in enumerate(instances, start=1):
                if info.series_uid not in series_dirs:
                    series_dirs[info.series_uid] = out / f"S{len(series_dirs) + 1:04d}"
                    series_dirs[info.series_uid].mkdir(mode=0o700, exist_ok=True)
                _export_one(pacs, info, series_dirs[info.series_uid] / f"I{number:06d}.dcm")
                written += 1
        finally:
            pacs.audit.append(
                AuditEvent(
                    EventID.EXPORT,
                    Action.READ,
                    outcome=Outcome.SUCCESS if written == len(instances) else Outcome.SERIOUS_FAILURE,
                    user_id=_actor(),
                    patient_id=instances[0].patient_id,
                    study_uid=args.study_uid,
                    details={
                        "instances": len(instances),
                        "written": written,
                        "destination": str(out.resolve()),
                    },
                )
            )
    finally:
        pacs.close()
    print(f"exported {len(instances)} objects in {len(series_dirs)} series to {out}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Re-authenticate every stored object and check the index."""
    pacs = _open(args, environ)
    try:
        report = pacs.archive.verify(cleanup=True, spool=pacs.settings.data_dir / INCOMING)
        sweep = report.sweep
        audit_sweep(pacs.audit, sweep, why="verify", actor=_actor())
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
        leftovers = len(report.orphans) - len(sweep.unreadable) + len(report.temp_files)
        if leftovers:
            state = "removed" if report.cleaned else "left in place while another process is writing"
            print(f"{leftovers} blobs being written or left partial by interrupted writes: {state}")
        if report.spool_files:
            state = "removed" if report.cleaned else "left in place while pacs serve runs"
            count = len(report.spool_files)
            print(f"{count} objects left unencrypted in {INCOMING}/ by a stopped server: {state}")
        pacs.audit.append(
            AuditEvent(
                EventID.APPLICATION_ACTIVITY,
                Action.EXECUTE,
                outcome=Outcome.SUCCESS if report.ok else Outcome.SERIOUS_FAILURE,
                user_id=_actor(),
                event_type=EventType.SOFTWARE_CONFIGURATION,
                details={
                    "what": "verify",
                    "checked": report.checked,
                    "damaged": len(report.damaged),
                    "index_problems": len(report.inconsistent),
                    "reindexed": len(sweep.reindexed),
                    "incomplete_removed": len(sweep.removed),
                    "leftovers_removed": leftovers if report.cleaned else 0,
                    "spool_files_removed": len(report.spool_files) if report.cleaned else 0,
                },
            )
        )
    finally:
        pacs.close()
    print(f"{report.checked} objects checked: " + ("all intact" if report.ok else "DAMAGE FOUND"))
    return EXIT_OK if report.ok else EXIT_FAILED


def _checkpoint_lines(name: str) -> list[str]:
    """The lines of the syslog or journal copy `name` (``-``: standard input)."""
    if name == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(name).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise CommandError(f"cannot read the checkpoint file {name}: {exc.strerror or exc}") from None


def cmd_audit_verify(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Check the audit chain (and, with --checkpoint, that it holds what the checkpoints saw)."""
    lines = _checkpoint_lines(args.checkpoint) if args.checkpoint else None
    pacs = _open(args, environ)
    try:
        report = pacs.audit.verify()
        scan = checkpoints.Signer(pacs.keyring).scan(lines) if lines is not None else None
        rolled_back = checkpoints.check_trail(pacs.audit, scan, args.checkpoint) if scan is not None else []
        pacs.audit.append(
            AuditEvent(EventID.AUDIT_LOG_USED, Action.READ, user_id=_actor(), details={"what": "verify"})
        )
        if args.reanchor and not report.ok:
            pacs.audit.reanchor(_actor(), report)
    finally:
        pacs.close()
    for problem in report.acknowledged:
        print(f"ACKNOWLEDGED {problem}")
    for problem in report.problems:
        print(f"BROKEN {problem}")
    for problem in rolled_back:
        print(f"BROKEN checkpoint: {problem}")
    print(f"{report.records} audit records: " + ("chain intact" if report.ok else "CHAIN BROKEN"))
    if scan is not None:
        verdict = "trail holds every one" if not rolled_back else "TRAIL ROLLED BACK OR REWRITTEN"
        print(f"{len(scan.checkpoints)} checkpoints of this archive in {args.checkpoint}: {verdict}")
    if args.reanchor and not report.ok:
        print("re-anchored: these problems are acknowledged in a Security Alert record from now on")
        return EXIT_OK if not rolled_back else EXIT_FAILED
    return EXIT_OK if report.ok and not rolled_back else EXIT_FAILED


def _export_atna(pacs: Pacs) -> Callable[[TextIO], int]:
    return lambda out: atna.export_xml(pacs.audit.records(), out)


def cmd_audit_export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Write the audit trail out."""
    pacs = _open(args, environ)
    try:
        pacs.audit.append(
            AuditEvent(
                EventID.AUDIT_LOG_USED,
                Action.READ,
                user_id=_actor(),
                details={"what": "export", "format": args.format},
            )
        )
        export = pacs.audit.export_jsonl if args.format == "jsonl" else _export_atna(pacs)
        if args.output:
            with open(args.output, "x", encoding="utf-8") as out:
                count = export(out)
            print(f"{count} audit records written to {args.output}", file=sys.stderr)
        else:
            export(sys.stdout)
    finally:
        pacs.close()
    return EXIT_OK


def cmd_modality_add(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Enrol a modality or workstation."""
    pacs = _open(args, environ)
    try:
        settings = pacs.settings
        if args.plaintext and settings.dicom.plaintext_port == 0:
            raise CommandError(
                "--plaintext needs a plaintext port: set [dicom] plaintext_port in pacs.toml first"
            )
        permissions = parse_permissions(args.allow)
        check_enrolment(args.ae_title, host=args.host, port=args.port, plaintext=args.plaintext)
        registry = NodeRegistry(pacs.database)
        if registry.get(args.ae_title) is not None:
            raise CommandError(f"a node with AE title {args.ae_title!r} is already enrolled")
        if args.issue_cert:
            ca = pki.Issued(
                key=pki.load_private_key(settings.key_dir / CA_KEY),
                cert=pki.load_certificate(settings.tls_dir / CA_CERT),
            )
            certificate = issue_node_certificate(
                ca, args.ae_title, Path(args.issue_cert), server_auth=bool(args.port)
            )
        else:
            certificate = pki.load_certificate(Path(args.cert))
        node = registry.add(
            args.ae_title,
            host=args.host,
            certificate=certificate,
            cert_issued=bool(args.issue_cert),
            permissions=permissions,
            port=args.port,
            plaintext=args.plaintext,
        )
        event = node_event(Action.CREATE, node, "node enrolled", user=_actor(), authority=CLI_AUTHORITY)
        pacs.audit.append(event)
    finally:
        pacs.close()
    print(f"enrolled {node.ae_title} from {node.network}, may {','.join(sorted(node.permissions))}")
    if granted := phi_grant(node.permissions):
        print(
            f"  PHI grant: {','.join(granted)} lets {node.ae_title} read every patient's data "
            "(audited; listed by pacs selfcheck)"
        )
    if args.issue_cert:
        out = Path(args.issue_cert)
        print(f"  certificate: {out / 'client.crt'}, key: {out / 'client.key'}, CA: {out / 'ca.crt'}")
        print(
            f"  test it: TCP_NODELAY=1 echoscu +tls {out / 'client.key'} {out / 'client.crt'} "
            f"+cf {out / 'ca.crt'} -aec {settings.dicom.ae_title} -aet {node.ae_title} "
            f"{settings.server.hostname} {settings.dicom.port}"
        )
    if node.plaintext:
        print(f"  WARNING: {node.ae_title} uses UNENCRYPTED DICOM on port {settings.dicom.plaintext_port}")
    return EXIT_OK


def cmd_modality_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List enrolled nodes."""
    pacs = _open(args, environ)
    try:
        nodes = NodeRegistry(pacs.database).all()
    finally:
        pacs.close()
    print(f"{'AE title':<16}  {'address':<18}  {'port':>5}  {'may':<18}  {'certificate':<20}  transport")
    for node in nodes:
        cert = f"{'issued' if node.cert_issued else 'pinned'} {node.fingerprint[:12]}"
        transport = "PLAINTEXT" if node.plaintext else "tls"
        print(
            f"{node.ae_title:<16}  {node.network!s:<18}  {node.port or '':>5}  "
            f"{','.join(sorted(node.permissions)):<18}  {cert:<20}  {transport}"
        )
    return EXIT_OK


def cmd_modality_remove(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Remove an enrolled node."""
    pacs = _open(args, environ)
    try:
        node = NodeRegistry(pacs.database).remove(args.ae_title)
        pacs.audit.append(node_event(Action.DELETE, node, "node removed", user=_actor()))
    finally:
        pacs.close()
    print(f"removed {node.ae_title}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the DICOM service in the foreground until Ctrl-C or SIGTERM."""
    settings = load_settings(_data_dir(args, environ), environ)
    service.run(settings, user=_actor(), announce=lambda line: print(line, flush=True))
    return EXIT_OK


def _user_event(action: Action, account: Account, what: str) -> AuditEvent:
    return AuditEvent(
        EventID.SECURITY_ALERT,
        action,
        user_id=_actor(),
        event_type=EventType.USER_SECURITY_ATTRIBUTES_CHANGED,
        details={"what": what, "user": account.name, "roles": sorted(account.roles)},
    )


def _accounts(pacs: Pacs) -> Accounts:
    return Accounts(pacs.database, pacs.keyring, audit=pacs.audit)


def cmd_user_add(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Create a web user with a one-time password."""
    roles = parse_roles(args.role)
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    pacs = _open(args, environ)
    try:
        account, password = _accounts(pacs).add(args.name, roles, password)
        pacs.audit.append(_user_event(Action.CREATE, account, "user created"))
    finally:
        pacs.close()
    print(f"created {account.name} ({', '.join(sorted(account.roles))})")
    if not args.password_stdin:
        print(f"one-time password: {password}  (to be changed at the first login)")
    return EXIT_OK


def cmd_user_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List web users."""
    pacs = _open(args, environ)
    try:
        accounts = _accounts(pacs).all()
    finally:
        pacs.close()
    print(f"{'user':<24}  {'roles':<16}  {'2FA':<8}  state")
    for account in accounts:
        state = [
            flag
            for flag, on in (
                ("disabled", account.disabled),
                ("locked", account.locked),
                ("must change password", account.must_change_password),
            )
            if on
        ]
        roles = ",".join(sorted(account.roles))
        second = "enrolled" if account.totp_enrolled else "pending"
        print(f"{account.name:<24}  {roles:<16}  {second:<8}  {', '.join(state) or 'active'}")
    return EXIT_OK


def _set_disabled(args: argparse.Namespace, environ: Mapping[str, str], disabled: bool) -> int:
    word = "disabled" if disabled else "enabled"
    pacs = _open(args, environ)
    try:
        account = _accounts(pacs).set_disabled(args.name, disabled)
        pacs.audit.append(_user_event(Action.UPDATE, account, f"user {word}"))
    finally:
        pacs.close()
    print(f"{word} {account.name}")
    return EXIT_OK


def cmd_user_disable(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Disable a web user."""
    return _set_disabled(args, environ, True)


def cmd_user_enable(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Enable a disabled web user again."""
    return _set_disabled(args, environ, False)


def cmd_user_unlock(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Lift a web user's lockout and login back-off (audited by the accounts service)."""
    pacs = _open(args, environ)
    try:
        account = _accounts(pacs).lift_lockout(args.name, actor=_actor())
    finally:
        pacs.close()
    print(f"unlocked {account.name}" + (" (still disabled: pacs user enable)" if account.disabled else ""))
    return EXIT_OK


def cmd_user_reset(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Give a web user a new one-time password and lift its lockout (and reset 2FA with --totp)."""
    pacs = _open(args, environ)
    try:
        accounts = _accounts(pacs)
        password = accounts.reset_password(args.name, actor=_actor())
        what = "password reset, lockout lifted"
        if args.totp:
            accounts.reset_totp(args.name)
            what += ", second factor reset"
        account = accounts.get(args.name)
        assert account is not None
        pacs.audit.append(_user_event(Action.UPDATE, account, what))
    finally:
        pacs.close()
    print(f"{account.name}: {what}" + ("; still disabled (pacs user enable)" if account.disabled else ""))
    print(f"one-time password: {password}  (to be changed at the next login)")
    return EXIT_OK


def _progress(label: str, *, quiet: bool = False) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )


def _key_event(what: str, outcome: Outcome = Outcome.SUCCESS, **details: object) -> AuditEvent:
    return AuditEvent(
        EventID.SECURITY_ALERT,
        Action.UPDATE,
        outcome=outcome,
        user_id=_actor(),
        event_type=EventType.SECURITY_CONFIGURATION,
        details={"what": what, **details},
    )


def cmd_keys_rotate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Re-wrap every data key under a new KEK, or finish an interrupted rotation."""
    pacs = _open(args, environ)
    try:
        current = pacs.keyring.current_version
        left = rotation.pending(pacs.database, current)
        if left and current > 1:
            print(f"resuming the rotation to key-encryption key {current}: {left} data keys left")
            pacs.audit.append(_key_event("key rotation resumed", kek_version=current, pending=left))
        else:
            current = pacs.keyring.add_version()
            left = rotation.pending(pacs.database, current)
            print(f"new key-encryption key {current} in {pacs.keyring.directory}")
            pacs.audit.append(_key_event("key rotation started", kek_version=current, pending=left))
        try:
            with _progress("re-wrapping data keys", quiet=args.quiet) as progress:
                task = progress.add_task("rewrap", total=left)
                done = rotation.rewrap(
                    pacs.database, pacs.keyring, on_batch=lambda n: progress.advance(task, n)
                )
        except BaseException as exc:
            pacs.audit.append(
                _key_event(
                    "key rotation interrupted", Outcome.MINOR_FAILURE, kek_version=current, error=repr(exc)
                )
            )
            raise
        # An object whose store began before the new KEK appeared may commit after the last batch.
        left = rotation.pending(pacs.database, current)
        if left:
            pacs.audit.append(
                _key_event(
                    "key rotation unfinished", Outcome.MINOR_FAILURE, kek_version=current, pending=left
                )
            )
        else:
            pacs.audit.append(_key_event("key rotation completed", kek_version=current, rewrapped=done))
    finally:
        pacs.close()
    if left:
        print(f"{done} data keys re-wrapped; {left} objects stored meanwhile are still under an older key")
        print("run 'pacs keys rotate' again to finish")
        return EXIT_FAILED
    print(f"{done} data keys re-wrapped; every object is now under key-encryption key {current}")
    print("no image was rewritten; keep a copy of the key directory offline")
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Show the KEK versions and how many data keys each wraps."""
    pacs = _open(args, environ)
    try:
        usage = rotation.key_usage(pacs.database)
        versions = pacs.keyring.versions
    finally:
        pacs.close()
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


def _passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    """The backup passphrase: the first line of --passphrase-file, or asked for on the terminal.

    ``--passphrase-file -`` reads standard input as it is inherited (a pipe from root
    need not be reopened by the service user).
    """
    if args.passphrase_file == "-":
        passphrase = sys.stdin.readline().rstrip("\r\n")
    elif args.passphrase_file:
        try:
            lines = Path(args.passphrase_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the passphrase file {args.passphrase_file}: {exc}") from None
        passphrase = lines[0] if lines else ""
    elif sys.stdin.isatty():
        passphrase = getpass.getpass("backup passphrase: ")
        if confirm and getpass.getpass("again: ") != passphrase:
            raise CommandError("the two passphrases differ")
    else:
        raise CommandError("no passphrase: give --passphrase-file FILE, or run in a terminal")
    if confirm:
        try:
            check_password_policy(passphrase)
        except AccountError as exc:
            raise CommandError(f"backup passphrase: {exc}") from None
    elif not passphrase:
        raise CommandError("the passphrase is empty")
    return passphrase


def _bytes_progress(label: str, quiet: bool) -> tuple[Progress, Callable[[int, int], None]]:
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


def _backup_event(outcome: Outcome, **details: object) -> AuditEvent:
    return AuditEvent(
        EventID.EXPORT,
        Action.READ,
        outcome=outcome,
        user_id=_actor(),
        details={"what": selfcheck.BACKUP_WHAT, **details},
    )


def cmd_backup(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Write an encrypted, authenticated snapshot of the running archive."""
    out = Path(args.outfile)
    passphrase = _passphrase(args, confirm=True)
    pacs = _open(args, environ)
    try:
        progress, update = _bytes_progress("backing up", args.quiet)
        try:
            with progress:
                summary = backup.backup(pacs, out, passphrase, progress=update)
        except BaseException as exc:
            pacs.audit.append(
                _backup_event(Outcome.SERIOUS_FAILURE, file=str(out.resolve()), error=repr(exc))
            )
            raise
        pacs.audit.append(
            _backup_event(
                Outcome.SUCCESS,
                file=str(summary.path.resolve()),
                objects=summary.objects,
                bytes=summary.size,
                snapshot_at=summary.snapshot_at,
            )
        )
    finally:
        pacs.close()
    print(
        f"backed up {summary.objects} objects ({summary.size // 2**20} MiB) to {out}, "
        f"snapshot of {summary.snapshot_at}"
    )
    print("the file holds the keys too: keep the passphrase apart from it, and a copy off the appliance")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Restore a backup into a new data directory, then verify it."""
    data_dir = _data_dir(args, environ)
    passphrase = _passphrase(args, confirm=False)
    progress, check = _bytes_progress("checking", args.quiet)
    writing = progress.add_task("restoring", total=None, visible=False)
    with progress:
        summary = backup.restore(
            Path(args.infile),
            data_dir,
            passphrase,
            key_dir=args.key_dir or "",
            db_url=args.db,
            progress=check,
            write_progress=lambda done, total: progress.update(
                writing, completed=done, total=total, visible=True
            ),
        )
    pacs = open_pacs(summary.settings)
    try:
        pacs.audit.append(
            AuditEvent(
                EventID.IMPORT,
                Action.CREATE,
                outcome=Outcome.SUCCESS if summary.ok else Outcome.SERIOUS_FAILURE,
                user_id=_actor(),
                event_type=EventType.SOFTWARE_CONFIGURATION,
                details={
                    "what": "restore",
                    "file": str(Path(args.infile).resolve()),
                    "backup_of": summary.created_at,
                    "objects": summary.objects,
                    "damaged": len(summary.damaged),
                },
            )
        )
    finally:
        pacs.close()
    for problem in summary.damaged:
        print(f"DAMAGED {problem}")
    for problem in summary.audit_problems:
        print(f"AUDIT {problem}")
    print(f"restored the backup of {summary.created_at} into {summary.settings.data_dir}")
    print(f"verify: {summary.objects} objects checked: " + ("all intact" if summary.ok else "DAMAGE FOUND"))
    return EXIT_OK if summary.ok else EXIT_FAILED


def cmd_migrate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Bring the index schema up to this version's (every command does so; this one says so)."""
    pacs = _open(args, environ)
    try:
        migrated, current = pacs.migrated, pacs.database.revision()
    finally:
        pacs.close()
    if migrated is None:
        print(f"index schema is current (revision {current})")
    else:
        print(f"index schema migrated from revision {migrated[0]} to {migrated[1]}")
    return EXIT_OK


def cmd_cert_renew(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Issue a new server certificate from the archive's CA."""
    pacs = _open(args, environ)
    settings = pacs.settings
    try:
        certificate = renew_server_certificate(settings)
        pacs.audit.append(
            AuditEvent(
                EventID.SECURITY_ALERT,
                Action.UPDATE,
                user_id=_actor(),
                event_type=EventType.SECURITY_CONFIGURATION,
                details={
                    "what": "server certificate renewed",
                    "hostname": settings.server.hostname,
                    "not_after": certificate.not_valid_after_utc.isoformat(),
                    "fingerprint": pki.fingerprint(certificate),
                },
            )
        )
    finally:
        pacs.close()
    print(
        f"new server certificate for {settings.server.hostname}, valid until "
        f"{certificate.not_valid_after_utc:%Y-%m-%d}, in {settings.tls_dir / SERVER_CERT}"
    )
    print("restart pacs serve to use it; modalities and browsers that trust the CA need no change")
    return EXIT_OK


def cmd_selfcheck(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Report the security posture; non-zero when anything needs fixing."""
    pacs = _open(args, environ)
    try:
        report = selfcheck.run(pacs)
        pacs.audit.append(
            AuditEvent(
                EventID.APPLICATION_ACTIVITY,
                Action.EXECUTE,
                outcome=Outcome.SUCCESS if report.ok else Outcome.MINOR_FAILURE,
                user_id=_actor(),
                event_type=EventType.SECURITY_CONFIGURATION,
                details={"what": "selfcheck", "findings": [f.message for f in report.findings]},
            )
        )
    finally:
        pacs.close()
    if args.json:
        print(report.to_json())
        return EXIT_OK if report.ok else EXIT_FAILED
    for finding in report.findings:
        print(f"FINDING [{finding.check}] {finding.message}")
        print(f"        fix: {finding.fix}")
    for note in report.notes:
        print(f"note    [{note.check}] {note.message}")
    verdict = "no findings" if report.ok else f"{len(report.findings)} FINDINGS"
    print(f"{len(report.checked)} checks ({', '.join(report.checked)}): {verdict}")
    return EXIT_OK if report.ok else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``pacs`` command."""
    parser = argparse.ArgumentParser(prog="pacs", description="Hardened mini-PACS for small practices.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., int], help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("--data", metavar="DIR", help="data directory (default: $PACS_DATA)")
        sub.set_defaults(handler=handler)
        return sub

    init = command("init", cmd_init, "create a new archive in an empty or new directory")
    init.add_argument("--ae-title", default="PACS", help="our AE title (default PACS)")
    init.add_argument("--hostname", default="localhost", help="name or IP address for the server certificate")
    init.add_argument("--db", metavar="URL", help="PostgreSQL URL instead of the embedded encrypted SQLite")
    init.add_argument("--admin", default="admin", help="name of the first admin user (default admin)")
    init.add_argument(
        "--key-dir", metavar="DIR", help="keep the keys here, e.g. /etc/pacs/keys (default DIR/keys)"
    )

    imp = command("import", cmd_import, "import DICOM files, folders and patient CDs (DICOMDIR)")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")

    exp = command("export", cmd_export, "write decrypted copies of a study (audited)")
    exp.add_argument("study_uid", metavar="STUDY_UID")
    exp.add_argument("outdir", metavar="OUTDIR")

    command("verify", cmd_verify, "re-authenticate every stored object and the index")

    check = command("selfcheck", cmd_selfcheck, "security posture report; non-zero exit on any finding")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    back = command("backup", cmd_backup, "write an encrypted snapshot of the archive (while it runs)")
    back.add_argument("outfile", metavar="OUTFILE")
    back.add_argument(
        "--passphrase-file", metavar="FILE", help="read the passphrase from FILE's first line (- for stdin)"
    )
    back.add_argument("--quiet", action="store_true", help="no progress bar")

    rest = command("restore", cmd_restore, "restore a backup into a new data directory and verify it")
    rest.add_argument("infile", metavar="INFILE")
    rest.add_argument(
        "--passphrase-file", metavar="FILE", help="read the passphrase from FILE's first line (- for stdin)"
    )
    rest.add_argument(
        "--key-dir", metavar="DIR", help="put the keys here instead of where the backup had them"
    )
    rest.add_argument("--db", metavar="URL", help="restore the index into this empty PostgreSQL database")
    rest.add_argument("--quiet", action="store_true", help="no progress bar")

    command("migrate", cmd_migrate, "apply the index schema migrations of this version (audited)")

    command("serve", cmd_serve, "run the DICOM TLS listener in the foreground (Ctrl-C stops it)")

    modality = commands.add_parser("modality", help="enrol, list or remove DICOM nodes")
    modality_commands = modality.add_subparsers(dest="modality_command", required=True, metavar="ACTION")

    def modality_command(name: str, handler: Callable[..., int], help_: str) -> argparse.ArgumentParser:
        sub = modality_commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("--data", metavar="DIR", help="data directory (default: $PACS_DATA)")
        sub.set_defaults(handler=handler)
        return sub

    add = modality_command("add", cmd_modality_add, "enrol a modality or workstation")
    add.add_argument("ae_title", metavar="AE")
    add.add_argument("--host", required=True, metavar="IP|CIDR", help="address or network it connects from")
    add.add_argument("--allow", default="store", help="comma-separated: store,find,move,get (default store)")
    add.add_argument("--port", type=int, help="its own DICOM TLS port, to make it a retrieve destination")
    add.add_argument("--plaintext", action="store_true", help="legacy node without TLS (flagged, audited)")
    certificate = add.add_mutually_exclusive_group(required=True)
    certificate.add_argument(
        "--issue-cert", metavar="OUTDIR", help="issue client.crt/client.key/ca.crt into OUTDIR"
    )
    certificate.add_argument("--cert", metavar="PEMFILE", help="pin the node's own certificate")
    modality_command("list", cmd_modality_list, "list enrolled nodes")
    remove = modality_command("remove", cmd_modality_remove, "remove an enrolled node")
    remove.add_argument("ae_title", metavar="AE")

    keys = commands.add_parser("keys", help="rotate or list the key-encryption keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    for name, handler, help_ in (
        ("rotate", cmd_keys_rotate, "new key-encryption key, every data key re-wrapped (resumable)"),
        ("list", cmd_keys_list, "key-encryption key versions and the data keys each wraps"),
    ):
        sub = keys_commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("--data", metavar="DIR", help="data directory (default: $PACS_DATA)")
        sub.set_defaults(handler=handler)
    keys_commands.choices["rotate"].add_argument("--quiet", action="store_true", help="no progress bar")

    cert = commands.add_parser("cert", help="renew the archive's server certificate")
    cert_commands = cert.add_subparsers(dest="cert_command", required=True, metavar="ACTION")
    renew_help = "new server certificate from the archive's CA, for [server] hostname"
    renew = cert_commands.add_parser("renew", help=renew_help, description=renew_help)
    renew.add_argument("--data", metavar="DIR", help="data directory (default: $PACS_DATA)")
    renew.set_defaults(handler=cmd_cert_renew)

    user = commands.add_parser("user", help="add, list, disable, enable, unlock or reset web users")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    def user_command(name: str, handler: Callable[..., int], help_: str) -> argparse.ArgumentParser:
        sub = user_commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("--data", metavar="DIR", help="data directory (default: $PACS_DATA)")
        sub.set_defaults(handler=handler)
        if name != "list":
            sub.add_argument("name", metavar="NAME")
        return sub

    user_add = user_command("add", cmd_user_add, "create a web user with a one-time password")
    user_add.add_argument("--role", required=True, help="admin, physician, or both: admin,physician")
    user_add.add_argument(
        "--password-stdin", action="store_true", help="read the initial password from standard input"
    )
    user_command("list", cmd_user_list, "list web users")
    user_command("disable", cmd_user_disable, "disable a web user")
    user_command("enable", cmd_user_enable, "enable a disabled web user again")
    user_command("unlock", cmd_user_unlock, "lift a lockout (for a locked-out last admin: run it on the box)")
    user_reset = user_command("reset", cmd_user_reset, "new one-time password; lifts a lockout")
    user_reset.add_argument("--totp", action="store_true", help="also remove the second factor (re-enrol)")

    audit = commands.add_parser("audit", help="verify or export the audit trail")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    for name, handler, help_ in (
        ("verify", cmd_audit_verify, "check the hash chain of the audit trail"),
        ("export", cmd_audit_export, "write the audit trail out"),
    ):
        sub = audit_commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("--data", metavar="DIR", help="data directory (default: $PACS_DATA)")
        sub.set_defaults(handler=handler)
        if name == "verify":
            sub.add_argument(
                "--reanchor",
                action="store_true",
                help="after investigating a broken chain, acknowledge its problems in a Security Alert "
                "record and anchor the chain at it",
            )
            sub.add_argument(
                "--checkpoint",
                metavar="FILE",
                help="also check the trail against the signed checkpoints in FILE, a copy of the journal "
                "or syslog (journalctl -t pacs -o cat > FILE), or - for standard input",
            )
        if name == "export":
            sub.add_argument("--format", choices=["jsonl", "atna-xml"], default="jsonl")
            sub.add_argument(
                "--output", "-o", metavar="FILE", help="write to FILE instead of standard output"
            )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one ``pacs`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    os.umask(0o077)
    try:
        return int(args.handler(args, environ))
    except (
        CommandError,
        ConfigError,
        DataDirError,
        ArchiveError,
        KeyFileError,
        IntegrityError,
        EnrolmentError,
        AccountError,
        service.ServiceError,
        pki.PKIError,
        backup.BackupError,
    ) as exc:
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


if __name__ == "__main__":
    sys.exit(main())
