"""``pacs study anonymize UID OUT``: a de-identified copy of a study (PS3.15 Annex E) in a folder or ZIP file.

OUT ending in ``.zip`` is written as a ZIP file, anything else as a new folder; an existing
OUT is refused. The copy is audited as made by the admin on the box (source ``cli``); see
:mod:`pacs.ops.anonymize`. Objects that may show burned-in annotation are named in a warning
line each and left out unless ``--allow-burned-in``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from pacs.cli.common import EXIT_OK, Subcommands, actor, add_command, opened
from pacs.ops.anonymize import CopyReport, anonymize_to_path
from pacs.ops.deid import Options

_OPTION_WORDS = {
    "basic": "basic profile",
    "full_dates": "dates kept",
    "modified_dates": "dates shifted",
    "clean_descriptors": "descriptors cleaned",
}


def _summary(report: CopyReport, out: Path) -> str:
    """The one line that says what was written where."""
    options = ", ".join(_OPTION_WORDS[name] for name in report.options.methods())
    return (
        f"anonymized {report.written} of {len(report.objects)} objects to {out} "
        f"(patient {report.patient_name}, ID {report.patient_id}; {options})"
    )


def cmd_anonymize(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Write the de-identified copy of a study."""
    options = Options(
        retain_dates=args.retain_dates,
        shift_dates=args.shift_dates,
        clean_descriptors=args.clean_descriptors,
        patient_name=args.patient_name or "",
        patient_id=args.patient_id or "",
    )
    out = Path(args.out)
    with opened(args, environ) as pacs:
        report = anonymize_to_path(
            pacs,
            args.study_uid,
            out,
            options,
            allow_burned_in=args.allow_burned_in,
            by=actor(),
            source="cli",
        )
    for line in report.warnings():
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps({"out": str(out), **json.loads(report.manifest())}))
    else:
        print(_summary(report, out))
    return EXIT_OK


def register(studies: Subcommands) -> None:
    """Add ``pacs study anonymize`` to the group."""
    sub = add_command(
        studies,
        "anonymize",
        cmd_anonymize,
        "write a de-identified copy of a study (DICOM PS3.15 Basic Profile) to a folder or OUT.zip",
    )
    sub.add_argument("study_uid", metavar="STUDY_UID")
    sub.add_argument("out", metavar="OUT", help="a new folder, or a new file ending in .zip")
    sub.add_argument("--patient-name", metavar="NAME", help="the copy's patient name (default ANONYMOUS)")
    sub.add_argument("--patient-id", metavar="ID", help="the copy's patient ID (default a random ANON...)")
    sub.add_argument(
        "--retain-dates",
        action="store_true",
        help="keep dates and times (Retain Longitudinal Temporal Information With Full Dates)",
    )
    sub.add_argument(
        "--shift-dates",
        action="store_true",
        help="move every date back by one random shift of the copy (... With Modified Dates)",
    )
    sub.add_argument(
        "--clean-descriptors",
        action="store_true",
        help="keep descriptions and comments with identifying values taken out (Clean Descriptors)",
    )
    sub.add_argument(
        "--allow-burned-in",
        action="store_true",
        help="also copy objects that may show burned-in annotation (ultrasound, secondary capture)",
    )
    sub.add_argument("--json", action="store_true", help="print the manifest as JSON")
