"""``pacs study forward|queue|retry|cancel``: sending studies to enrolled nodes through the forwarding queue.

``forward`` queues a study (``--series`` one of its series) or with ``--patient`` every study of
a patient for a node enrolled with a port; the job is committed (and audited) before the command
returns, and the sender in ``pacs serve`` sends it. ``queue`` lists the jobs (``--state``,
``--json``), ``retry`` puts a failed job back (or makes a pending one due now) and ``cancel``
stops a pending one. See :mod:`pacs.ops.forwarding` and :mod:`pacs.ops.forward_queue`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from pacs.cli.common import EXIT_OK, CommandError, Subcommands, actor, add_command, opened
from pacs.ops.forward_queue import STATES, ForwardQueue, Job
from pacs.ops.forwarding import Forwarding


def line(job: Job) -> str:
    """One job as the commands print it."""
    what = f"series {job.series_uid} of " if job.series_uid else ""
    counts = f"{job.sent} sent, {job.failed} failed" if job.attempts else "not tried yet"
    when = f"next try {job.next_attempt_at:%Y-%m-%d %H:%M:%S}Z" if job.state == "pending" else ""
    commitment = f"commitment {job.commitment}" if job.commitment else ""
    error = f"last error: {job.last_error}" if job.last_error else ""
    parts = [f"#{job.id}", job.state, f"{what}study {job.study_uid}", f"-> {job.destination}"]
    parts += [f"by {job.requested_by}", f"{job.attempts} attempts", counts, when, commitment, error]
    return "  ".join(part for part in parts if part)


def cmd_forward(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Queue a study, a series or a patient's studies for a node."""
    if bool(args.uid) == bool(args.patient):
        raise CommandError("give a study UID or --patient ID (one of them)")
    if args.patient and args.series:
        raise CommandError("--series goes with a study UID, not with --patient")
    with opened(args, environ) as pacs:
        forwarding = Forwarding(pacs.database, pacs.audit, pacs.settings.routes)
        if args.patient:
            jobs = forwarding.forward_patient(args.patient, args.to, by=actor(), source="cli")
        else:
            job = forwarding.forward_study(
                args.uid, args.to, by=actor(), source="cli", series_uid=args.series
            )
            jobs = [job]
    for job in jobs:
        print(f"queued {line(job)}")
    return EXIT_OK


def cmd_queue(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List the forwarding jobs (pending first by when they are due, then failed, then sent)."""
    with opened(args, environ) as pacs:
        queue = ForwardQueue(pacs.database)
        states = [args.state] if args.state else list(STATES)
        jobs = [job for state in states for job in queue.jobs(state)]
    if args.json:
        print(json.dumps([job.as_dict() for job in jobs], indent=2, ensure_ascii=False))
    else:
        for job in jobs:
            print(line(job))
    return EXIT_OK


def cmd_job(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``retry`` (a failed job back, or a pending one due now) or ``cancel`` (a pending job stopped)."""
    with opened(args, environ) as pacs:
        forwarding = Forwarding(pacs.database, pacs.audit, pacs.settings.routes)
        act = forwarding.retry if args.study_command == "retry" else forwarding.cancel
        job = act(args.job, by=actor(), source="cli")
    print(f"{'due now' if args.study_command == 'retry' else 'cancelled'}: {line(job)}")
    return EXIT_OK


def register(studies: Subcommands) -> None:
    """Add forward, queue, retry and cancel to ``pacs study``."""
    forward = add_command(studies, "forward", cmd_forward, "send a study, series or patient to a node")
    forward.add_argument("uid", nargs="?", metavar="STUDY_UID", help="the study to send")
    forward.add_argument("--series", metavar="UID", default="", help="only this series of the study")
    forward.add_argument("--patient", metavar="ID", help="every study of this Patient ID instead")
    forward.add_argument("--to", metavar="AE", required=True, help="AE title of an enrolled node with a port")
    listing = add_command(studies, "queue", cmd_queue, "list the forwarding jobs")
    listing.add_argument("--state", choices=STATES, help="only the jobs in this state")
    listing.add_argument("--json", action="store_true", help="JSON instead of one line per job")
    for name, help_ in (
        ("retry", "put a failed forwarding job back, or make a pending one due now"),
        ("cancel", "stop a pending forwarding job"),
    ):
        sub = add_command(studies, name, cmd_job, help_)
        sub.add_argument("job", type=int, metavar="JOB_ID", help="the job's number (pacs study queue)")
