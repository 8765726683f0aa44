"""``pacs study edit|move|merge|history|undo``: corrections written as new versions of the objects.

The received objects stay as they arrived (``pacs export --original`` writes them); every
interface serves the corrected versions. Each action needs ``--reason`` and is audited as
done by the admin on the box (source ``cli``); see :mod:`pacs.ops.corrections`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from pacs.cli.common import EXIT_OK, CommandError, Subcommands, actor, add_command, opened
from pacs.ops import corrections
from pacs.ops.correction_values import FIELDS, parse_assignments
from storage import changes
from storage.changes import HistoryEntry
from storage.versions import Change


def _actor(args: argparse.Namespace) -> corrections.Actor:
    return corrections.Actor(by=actor(), source="cli", reason=args.reason)


def _report(verb: str, change: Change) -> None:
    """One line per study the change touched, then the change's id."""
    for study in change.studies:
        print(f"{verb} {study.study_uid}: {len(study.instances)} new versions")
    print(f"change {change.id}")


def cmd_edit(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Set patient or study attributes of a study."""
    values = parse_assignments(args.set)
    with opened(args, environ) as pacs:
        change = corrections.edit(pacs, args.study_uid, values, _actor(args))
    _report("edited", change)
    return EXIT_OK


def cmd_move(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """File a study under another existing patient record."""
    with opened(args, environ) as pacs:
        change = corrections.move(pacs, args.study_uid, args.to_patient, args.issuer, _actor(args))
    _report("moved", change)
    return EXIT_OK


def cmd_merge(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Move every study of one patient record to another."""
    with opened(args, environ) as pacs:
        source = changes.one_patient(pacs.database, args.from_patient, args.from_issuer)
        into = changes.one_patient(pacs.database, args.into_patient, args.into_issuer)
        change = corrections.merge(pacs, source, into, _actor(args))
    _report("moved", change)
    return EXIT_OK


def cmd_undo(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Give the studies of a change their values before it, as a new change."""
    with opened(args, environ) as pacs:
        change = corrections.undo(pacs, args.change_id, _actor(args))
    _report("restored", change)
    return EXIT_OK


def _as_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "changed_at": entry.changed_at.isoformat(),
        "kind": entry.kind,
        "studies": entry.study_uids(),
        "user": entry.user_id,
        "source": entry.source,
        "reason": entry.reason,
        "undone_by": entry.undone_by,
        "details": entry.details,
    }


def _line(entry: HistoryEntry) -> str:
    """A change in one line: id, time, kind, who, what changed, why."""
    what = "; ".join(
        f"{key} {study['before'].get(key, '')!r} -> {value!r}"
        for study in entry.details.get("studies", [])[:1]
        for key, value in study.get("after", {}).items()
    )
    studies = len(entry.study_uids())
    undone = f" (undone by change {entry.undone_by})" if entry.undone_by else ""
    when = entry.changed_at.strftime("%Y-%m-%d %H:%M")
    head = f"{entry.id}  {when}  {entry.kind}  {entry.user_id}  {studies} studies"
    return f"{head}  {what}  reason: {entry.reason}{undone}"


def cmd_history(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List the changes of a study or of a patient."""
    if bool(args.patient) == bool(args.study_uid):
        raise CommandError("give a STUDY_UID or --patient PATIENT_ID")
    with opened(args, environ) as pacs:
        if args.patient:
            entries = corrections.patient_history(pacs, args.patient, args.issuer)
        else:
            entries = corrections.study_history(pacs, args.study_uid)
    if args.json:
        print(json.dumps([_as_json(entry) for entry in entries], indent=2))
    else:
        for entry in entries:
            print(_line(entry))
    return EXIT_OK


def _reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why (kept in the history and the audit trail)")


def register(studies: Subcommands) -> None:
    """Add edit, move, merge, history and undo to ``pacs study``."""
    edit = add_command(studies, "edit", cmd_edit, "correct patient or study attributes (new versions)")
    edit.add_argument("study_uid", metavar="STUDY_UID")
    edit.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="KEYWORD=VALUE",
        help="attribute to set, repeatable; one of " + ", ".join(FIELDS),
    )
    _reason(edit)
    move = add_command(studies, "move", cmd_move, "file a study under another patient (new versions)")
    move.add_argument("study_uid", metavar="STUDY_UID")
    move.add_argument(
        "--to-patient", required=True, metavar="PATIENT_ID", help="the Patient ID it belongs to"
    )
    move.add_argument("--issuer", help="that patient's Issuer of Patient ID, when several share the ID")
    _reason(move)
    merge = add_command(studies, "merge", cmd_merge, "move every study of one patient record to another")
    merge.add_argument("--from-patient", required=True, metavar="PATIENT_ID")
    merge.add_argument("--from-issuer", help="Issuer of Patient ID of the record merged away")
    merge.add_argument("--into-patient", required=True, metavar="PATIENT_ID")
    merge.add_argument("--into-issuer", help="Issuer of Patient ID of the record kept")
    _reason(merge)
    history = add_command(
        studies, "history", cmd_history, "the corrections and deletions of a study or patient"
    )
    history.add_argument("study_uid", metavar="STUDY_UID", nargs="?")
    history.add_argument("--patient", metavar="PATIENT_ID", help="every study of this patient instead")
    history.add_argument("--issuer", help="with --patient: its Issuer of Patient ID")
    history.add_argument("--json", action="store_true", help="JSON instead of one line per change")
    undo = add_command(studies, "undo", cmd_undo, "give a change's studies their values before it")
    undo.add_argument("change_id", metavar="CHANGE_ID", type=int)
    _reason(undo)
