"""``pacs daily-check``: the daily selfcheck whose findings, certificates and checkpoint become alerts.

The systemd timer ``pacs-selfcheck.timer`` runs it once a day (see :mod:`pacs.ops.daily_check`
for how it and ``pacs serve``'s own loop avoid running it twice); an admin may run it any time.
It exits 0 when it ran, whatever it found: the findings go out as alerts.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from pacs.cli.common import EXIT_OK, CommandError, Subcommands, actor, add_command, opened
from pacs.ops.alert_state import AlertState
from pacs.ops.alerts import AlertQueue
from pacs.ops.daily_check import due, last_run, run_daily_check


def cmd_daily_check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the daily check now, unless it ran within ``--skip-if-ran-within`` hours."""
    if args.skip_if_ran_within < 0:
        raise CommandError("--skip-if-ran-within must be 0 or more hours")
    now = datetime.now(UTC)
    with opened(args, environ) as pacs:
        state = AlertState(pacs.database)
        if not due(state, now, timedelta(hours=args.skip_if_ran_within)):
            print(f"skipped: the daily check ran at {last_run(state):%Y-%m-%d %H:%M} UTC")
            return EXIT_OK
        result = run_daily_check(pacs, AlertQueue(pacs.database), now, by=actor())
    report = result.report
    print(
        f"{len(report.checked)} checks, {len(report.findings)} findings; "
        f"{result.alerts} alerts queued (pacs serve sends them)"
    )
    return EXIT_OK


def register(commands: Subcommands) -> None:
    """Add ``pacs daily-check`` to the parser."""
    daily = add_command(
        commands,
        "daily-check",
        cmd_daily_check,
        "run the selfcheck and queue alerts for new and cleared findings, certificates and a checkpoint",
    )
    daily.add_argument(
        "--skip-if-ran-within",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="do nothing if the daily check (of pacs serve or of this command) ran in the last HOURS",
    )
