"""``pacs audit verify|export`` and ``pacs selfcheck``: what the archive recorded, and its posture."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from pacs.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    Subcommands,
    actor,
    add_command,
    add_group,
    opened,
)
from pacs.core import atna, checkpoints, events
from pacs.core.context import Context
from pacs.ops import selfcheck
from pacs.ops.alert_sources import chain_alert
from pacs.ops.alerts import AlertQueue
from pacs.ops.assessment_report import write_report


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
    with opened(args, environ) as pacs:
        report = pacs.audit.verify()
        scan = checkpoints.Signer(pacs.keyring).scan(lines) if lines is not None else None
        rolled_back = checkpoints.check_trail(pacs.audit, scan, args.checkpoint) if scan is not None else []
        pacs.audit.append(events.audit_log_used("verify", by=actor()))
        if broken := [*report.problems, *rolled_back]:
            AlertQueue(pacs.database).put(chain_alert(broken, found_by="pacs audit verify"))
        if args.reanchor and not report.ok:
            pacs.audit.reanchor(actor(), report)
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


def _export_atna(pacs: Context) -> Callable[[TextIO], int]:
    return lambda out: atna.export_xml(pacs.audit.records(), out)


def cmd_audit_export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Write the audit trail out."""
    with opened(args, environ) as pacs:
        pacs.audit.append(events.audit_log_used("export", by=actor(), format=args.format))
        export = pacs.audit.export_jsonl if args.format == "jsonl" else _export_atna(pacs)
        if args.output:
            with open(args.output, "x", encoding="utf-8") as out:
                count = export(out)
            print(f"{count} audit records written to {args.output}", file=sys.stderr)
        else:
            export(sys.stdout)
    return EXIT_OK


def _write_assessment(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``--report OUT``: the assessment report as HTML, or PDF when OUT ends in .pdf."""
    out = Path(args.report)
    pdf = out.suffix.lower() == ".pdf"
    with opened(args, environ) as pacs:
        written = write_report(pacs, by=actor(), pdf=pdf)
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as document:
            document.write(written.pdf if pdf and written.pdf is not None else written.html)
    except OSError as exc:
        raise CommandError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    count = len(written.report.findings)
    print(f"assessment report written to {out}: {count} findings (sha256 of the HTML {written.entry.sha256})")
    return EXIT_OK if written.report.ok else EXIT_FAILED


def cmd_selfcheck(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Report the security posture; non-zero when anything needs fixing."""
    if args.report:
        return _write_assessment(args, environ)
    with opened(args, environ) as pacs:
        report = selfcheck.run(pacs)
        pacs.audit.append(events.selfcheck_run(by=actor(), findings=[f.message for f in report.findings]))
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


def register(commands: Subcommands) -> None:
    """Add ``pacs selfcheck`` and ``pacs audit`` to the parser."""
    check = add_command(
        commands, "selfcheck", cmd_selfcheck, "security posture report; non-zero exit on any finding"
    )
    output = check.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument(
        "--report",
        metavar="OUT",
        help="write the security assessment report to OUT: HTML, or PDF when OUT ends in .pdf "
        "(a copy is kept in DATA/reports/)",
    )
    audit = add_group(commands, "audit", "verify or export the audit trail")
    verify = add_command(audit, "verify", cmd_audit_verify, "check the hash chain of the audit trail")
    verify.add_argument(
        "--reanchor",
        action="store_true",
        help="after investigating a broken chain, acknowledge its problems in a Security Alert "
        "record and anchor the chain at it",
    )
    verify.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="also check the trail against the signed checkpoints in FILE, a copy of the journal "
        "or syslog (journalctl -t pacs -o cat > FILE), or - for standard input",
    )
    export = add_command(audit, "export", cmd_audit_export, "write the audit trail out")
    export.add_argument("--format", choices=["jsonl", "atna-xml"], default="jsonl")
    export.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
