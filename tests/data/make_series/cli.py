"""The command line: ``python -m tests.data.make_series ct OUTDIR --slices 500``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from tests.data.make_series.ct import make_ct_series
from tests.data.make_series.mr import make_mr_series
from tests.data.make_series.us import make_us_cine


def _build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for :func:`main`.

    Returns
    -------
    argparse.ArgumentParser
        The configured parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.data.make_series",
        description="Write a synthetic DICOM series (no real patient data).",
    )
    parser.add_argument("modality", choices=("ct", "mr", "us"))
    parser.add_argument("outdir", type=Path, help="output directory")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--slices", type=int, help="number of slices (ct, mr)")
    count.add_argument("--frames", type=int, help="number of frames (us)")
    parser.add_argument("--rows", type=int, help="image rows")
    parser.add_argument("--columns", type=int, help="image columns")
    parser.add_argument("--patient-name", default="DOE^JANE")
    parser.add_argument("--patient-id", default="PID0001")
    parser.add_argument("--study-uid", default=None)
    parser.add_argument("--series-uid", default=None)
    parser.add_argument("--study-date", default="20240115")
    parser.add_argument("--accession", default="ACC0001")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line interface.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, without the program name; ``sys.argv[1:]`` if
        ``None``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 on invalid arguments.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    is_us = args.modality == "us"
    if is_us and args.slices is not None:
        parser.error("use --frames, not --slices, with 'us'")
    if not is_us and args.frames is not None:
        parser.error(f"use --slices, not --frames, with '{args.modality}'")

    kwargs: dict[str, object] = {
        "patient_name": args.patient_name,
        "patient_id": args.patient_id,
        "study_uid": args.study_uid,
        "series_uid": args.series_uid,
        "study_date": args.study_date,
        "accession": args.accession,
        "seed": args.seed,
    }
    count = args.frames if is_us else args.slices
    if count is not None:
        kwargs["frames" if is_us else "slices"] = count
    if args.rows is not None:
        kwargs["rows"] = args.rows
    if args.columns is not None:
        kwargs["columns"] = args.columns

    makers = {"ct": make_ct_series, "mr": make_mr_series, "us": make_us_cine}
    try:
        paths = makers[args.modality](args.outdir, **kwargs)  # type: ignore[operator]
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))

    noun = "file" if len(paths) == 1 else "files"
    print(f"wrote {len(paths)} {args.modality.upper()} {noun} to {args.outdir}")
    return 0
