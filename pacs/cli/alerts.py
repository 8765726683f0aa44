"""``pacs alerts test|send|list``: trying the alert channels, sending what is queued, showing the queue.

``test`` sends one alert of each kind through every channel of ``[alerts]`` now, past the queue,
and prints a line per channel (sent, failed and why, or no channel); it exits non-zero when
a configured channel failed. ``send`` gives the queued alerts that are due (and the audit
records not yet streamed) to the channels once, as ``pacs serve`` does all the time; ``list``
shows the queue, newest first. See :mod:`pacs.ops.alerts`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from pacs.cli.common import EXIT_FAILED, EXIT_OK, Subcommands, actor, add_command, add_group, opened
from pacs.ops.alerts import CHANNELS, PENDING, AlertQueue, QueuedAlert, alert_sender, trial_alerts


def line(alert: QueuedAlert) -> str:
    """One alert as ``pacs alerts list`` prints it."""
    states = "  ".join(f"{channel} {alert.state(channel)}" for channel in CHANNELS)
    due = any(alert.state(channel) == PENDING for channel in CHANNELS)
    when = f"next try {alert.next_attempt_at:%Y-%m-%d %H:%M:%S}Z" if due else ""
    error = f"last error: {alert.last_error}" if alert.last_error else ""
    parts = [f"#{alert.id}", f"{alert.created_at:%Y-%m-%d %H:%M:%S}Z", alert.kind, alert.subject, states]
    parts += [f"{alert.attempts} attempts", when, error]
    return "  ".join(part for part in parts if part)


def cmd_test(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Send one alert of each kind through every configured channel now; a line per channel."""
    with opened(args, environ) as pacs:
        results = alert_sender(pacs).trial(trial_alerts(actor()))
    for channel, result in results.items():
        print(f"{channel}: {result}")
    return EXIT_FAILED if any(result.startswith("failed") for result in results.values()) else EXIT_OK


def cmd_send(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Send the due alerts and the audit records not yet streamed, once; say what went and what did not."""
    with opened(args, environ) as pacs:
        outcome = alert_sender(pacs).run_once()
    for channel in CHANNELS:
        error = f"; not delivered: {outcome.errors[channel]}" if channel in outcome.errors else ""
        print(f"{channel}: {outcome.sent[channel]} alerts sent, {outcome.failed[channel]} failed{error}")
    print(f"syslog: {outcome.audit_records} audit records sent")
    return EXIT_OK if outcome.ok else EXIT_FAILED


def cmd_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List the alert queue, newest first (``--json`` for JSON)."""
    with opened(args, environ) as pacs:
        alerts = AlertQueue(pacs.database).alerts(limit=args.limit)
    if args.json:
        times = ("created_at", "next_attempt_at")
        rows = [
            {**alert.__dict__, **{key: getattr(alert, key).isoformat() for key in times}} for alert in alerts
        ]
        print(json.dumps(rows, indent=2))
    else:
        for alert in alerts:
            print(line(alert))
        if not alerts:
            print("no alerts")
    return EXIT_OK


def register(commands: Subcommands) -> None:
    """Add ``pacs alerts`` and its commands to the parser."""
    group = add_group(commands, "alerts", "try the alert channels ([alerts]) and look at the alert queue")
    add_command(group, "test", cmd_test, "send one alert of each kind through every channel now")
    add_command(group, "send", cmd_send, "send the due alerts (and audit records to syslog) once")
    listing = add_command(group, "list", cmd_list, "show the alert queue, newest first")
    listing.add_argument("--json", action="store_true", help="print the alerts as JSON")
    listing.add_argument("--limit", type=int, default=100, help="at most this many alerts (default 100)")
