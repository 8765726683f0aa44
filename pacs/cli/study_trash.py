"""``pacs study list|show|delete|restore|purge|retention``: finding studies, the trash and retention.

``list`` and ``show`` let an admin without the physician role find a study (the CLI is the
admin's tool on the box and needs no role). ``delete`` moves a study, or with ``--patient``
every study of a patient (erasure), to the trash with a required reason; ``restore`` brings
it back; ``purge`` destroys trashed studies (``--yes`` required); ``retention`` lists
(``--dry-run``) or trashes the studies past ``[storage] retention_years``. Every action is
audited as done by the admin on the box (source ``cli``); see :mod:`pacs.ops.study_trash`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from typing import Any

from pacs.cli.common import EXIT_OK, CommandError, Subcommands, actor, add_command, opened
from pacs.ops import study_trash
from pacs.ops.study_trash import Actor
from storage import study_details
from storage.search import StudyQuery
from storage.study_details import StudyDetails
from storage.trash import StudyRef

_DATES = re.compile(r"(\d{8})?(-)?(\d{8})?")
LIST_LIMIT = 500


def _actor() -> Actor:
    return Actor(actor(), "cli")


def _dates(text: str) -> tuple[str, str]:
    """``FROM-TO``, ``FROM-``, ``-TO`` or one day (YYYYMMDD) as (from, to)."""
    match = _DATES.fullmatch(text.strip())
    if not text.strip() or match is None or not (match[1] or match[3]):
        raise CommandError(f"--date {text!r}: give YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
    low, dash, high = match[1] or "", match[2], match[3] or ""
    return (low, high) if dash else (low, low)


def _line(ref: StudyRef) -> str:
    """One study as ``list`` and the trash actions print it."""
    deleted = f"  deleted {ref.deleted_at:%Y-%m-%d %H:%M}" if ref.deleted_at is not None else ""
    return (
        f"{ref.study_uid}  {ref.patient_id or '-'}  {ref.patient_name or '-'}  {ref.study_date or '-'}  "
        f"{ref.modalities.replace(chr(92), ',') or '-'}  {ref.description or '-'}  "
        f"{ref.series} series, {ref.instances} instances{deleted}"
    )


def _as_json(ref: StudyRef) -> dict[str, Any]:
    return {
        "study_uid": ref.study_uid,
        "patient_id": ref.patient_id,
        "patient_name": ref.patient_name,
        "study_date": ref.study_date,
        "modalities": ref.modalities.split("\\") if ref.modalities else [],
        "description": ref.description,
        "series": ref.series,
        "instances": ref.instances,
        "deleted_at": ref.deleted_at.isoformat() if ref.deleted_at is not None else None,
    }


def _print(refs: list[StudyRef], as_json: bool) -> None:
    if as_json:
        print(json.dumps([_as_json(ref) for ref in refs], indent=2, ensure_ascii=False))
    else:
        for ref in refs:
            print(_line(ref))


def cmd_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List studies (or those in the trash) by patient ID, name and date."""
    date_from, date_to = _dates(args.date) if args.date else ("", "")
    query = StudyQuery(
        name=args.name or "",
        patient_id=args.patient or "",
        date_from=date_from,
        date_to=date_to,
        trash=args.deleted,
        limit=LIST_LIMIT,
    )
    with opened(args, environ) as pacs:
        uids = [row.study_uid for row in pacs.archive.search_studies(query)]
        refs = [study_trash.find(pacs.archive, uid) for uid in uids]
    _print(refs, args.json)
    return EXIT_OK


def _show_lines(found: StudyDetails) -> list[str]:
    ref = found.ref
    lines = [
        f"study {ref.study_uid}  ({found.state}"
        + (f" since {ref.deleted_at:%Y-%m-%d %H:%M} UTC)" if ref.deleted_at is not None else ")"),
        f"  patient {ref.patient_name or '-'}  ID {ref.patient_id or '-'}  born {found.birth_date or '-'}"
        f"  sex {found.sex or '-'}",
        f"  date {ref.study_date or '-'} {found.study_time or ''}  accession {found.accession or '-'}"
        f"  study ID {found.study_id or '-'}  referring {found.referring_name or '-'}",
        f"  description {ref.description or '-'}  {ref.series} series, {ref.instances} instances,"
        f" {found.frames} frames",
    ]
    if found.received_in_trash:
        lines.append(
            f"  note: {found.received_in_trash} objects arrived while it was in the trash (kept there)"
        )
    lines += [
        f"  series {row.series_uid}  #{row.number if row.number is not None else '-'}  {row.modality or '-'}"
        f"  {row.description or '-'}  {row.instances} instances"
        for row in found.series
    ]
    lines += [
        f"  {row.changed_at:%Y-%m-%d %H:%M} {row.kind} by {row.user_id} from {row.source}"
        + (f": {row.reason}" if row.reason else "")
        for row in found.history
    ]
    return lines


def cmd_show(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Show a study: attributes, series, state and history."""
    with opened(args, environ) as pacs, pacs.database.read() as session:
        found = study_details.details(session, args.study_uid)
    print("\n".join(_show_lines(found)))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Move a study, or every study of a patient, to the trash."""
    if bool(args.study_uid) == bool(args.patient):
        raise CommandError("give either STUDY_UID or --patient PATIENT_ID")
    with opened(args, environ) as pacs:
        if args.patient:
            moved = study_trash.erase_patient(pacs.archive, pacs.audit, args.patient, _actor(), args.reason)
        else:
            moved = [
                study_trash.delete_study(pacs.archive, pacs.audit, args.study_uid, _actor(), args.reason)
            ]
        days = pacs.settings.storage.trash_days
    for ref in moved:
        print(f"moved to the trash: {_line(ref)}")
    print(f"purged after {days} days unless restored (pacs study restore UID)")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Bring a study back from the trash."""
    with opened(args, environ) as pacs:
        ref = study_trash.restore_study(pacs.archive, pacs.audit, args.study_uid, _actor())
    print(f"restored: {_line(ref)}")
    return EXIT_OK


def cmd_purge(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Destroy a trashed study, or every study whose time in the trash is over."""
    if bool(args.study_uid) == bool(args.expired):
        raise CommandError("give either STUDY_UID or --expired")
    if not args.yes:
        raise CommandError("purging destroys the stored objects for good: add --yes to confirm")
    with opened(args, environ) as pacs:
        if args.expired:
            days = pacs.settings.storage.trash_days
            gone = study_trash.purge_expired(pacs.archive, pacs.audit, days, _actor())
            uids = [ref.study_uid for ref in gone]
        else:
            study_trash.purge_study(pacs.archive, pacs.audit, args.study_uid, _actor(), args.reason or "")
            uids = [args.study_uid]
    for uid in uids:
        print(f"purged {uid}")
    print(f"{len(uids)} studies purged")
    return EXIT_OK


def cmd_retention(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List (--dry-run) or move to the trash the studies older than [storage] retention_years."""
    if not args.dry_run and not args.yes:
        raise CommandError("retention moves studies to the trash: add --yes to confirm, or --dry-run")
    with opened(args, environ) as pacs:
        years = pacs.settings.storage.retention_years
        if years <= 0:
            raise CommandError("[storage] retention_years is 0: studies are kept forever")
        due = study_trash.apply_retention(pacs.archive, pacs.audit, years, _actor(), dry_run=args.dry_run)
    verb = "would move to the trash" if args.dry_run else "moved to the trash"
    for ref in due:
        print(f"{verb}: {_line(ref)}")
    print(f"{len(due)} studies older than {years} years")
    return EXIT_OK


def register(studies: Subcommands) -> None:
    """Add list, show, delete, restore, purge and retention to ``pacs study``."""
    listing = add_command(studies, "list", cmd_list, "find studies by patient, name and date")
    listing.add_argument("--patient", metavar="ID", help="Patient ID (or part of it)")
    listing.add_argument("--name", metavar="TEXT", help="words of the patient's name")
    listing.add_argument("--date", metavar="FROM-TO", help="study date YYYYMMDD or a range FROM-TO")
    listing.add_argument("--deleted", action="store_true", help="the studies in the trash instead")
    listing.add_argument("--json", action="store_true", help="JSON instead of one line per study")
    show = add_command(studies, "show", cmd_show, "a study's attributes, series, state and history")
    show.add_argument("study_uid", metavar="STUDY_UID")
    delete = add_command(studies, "delete", cmd_delete, "move a study or a patient's studies to the trash")
    delete.add_argument("study_uid", metavar="STUDY_UID", nargs="?")
    delete.add_argument("--patient", metavar="PATIENT_ID", help="every study of this patient (erasure)")
    delete.add_argument("--reason", required=True, help="why (kept in the audit trail and the history)")
    restore = add_command(studies, "restore", cmd_restore, "bring a study back from the trash")
    restore.add_argument("study_uid", metavar="STUDY_UID")
    purge = add_command(studies, "purge", cmd_purge, "destroy studies in the trash for good")
    purge.add_argument("study_uid", metavar="STUDY_UID", nargs="?")
    purge.add_argument("--expired", action="store_true", help="every study past [storage] trash_days")
    purge.add_argument("--reason", help="why (default: purged from the trash by hand)")
    purge.add_argument("--yes", action="store_true", help="confirm: the objects are destroyed")
    retention = add_command(studies, "retention", cmd_retention, "apply [storage] retention_years")
    retention.add_argument("--dry-run", action="store_true", help="only list the studies due")
    retention.add_argument("--yes", action="store_true", help="confirm moving them to the trash")
