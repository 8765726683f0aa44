"""Decrypted copies of a study: the names they get, and a study written out to a folder (audited).

The CLI's ``pacs export`` and the viewer's ZIP download name the files alike:
``S0001/I000001.dcm``, series and instances numbered in the index's order. No value of
the data set goes into a name, so a path holds no patient data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pacs.core import events
from pacs.core.context import Context
from storage.archive import InstanceInfo


@dataclass(frozen=True)
class Exported:
    """What :func:`export_study` wrote."""

    instances: int
    series: int


def export_names(instances: list[InstanceInfo]) -> Iterator[tuple[str, InstanceInfo]]:
    """Each instance with its relative file name (``S0001/I000001.dcm``)."""
    series: dict[str, int] = {}
    for number, info in enumerate(instances, start=1):
        folder = series.setdefault(info.series_uid, len(series) + 1)
        yield f"S{folder:04d}/I{number:06d}.dcm", info


def _write_one(pacs: Context, info: InstanceInfo, target: Path) -> None:
    """Write the decrypted object to `target` (0600), which appears only once it is whole.

    Blobs are authenticated chunk by chunk, so a damaged one fails part-way: what was
    written of it is removed, never left looking like a complete file.
    """
    partial = target.with_name(f".{target.name}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            for chunk in pacs.archive.read_instance(info):
                sink.write(chunk)
        os.link(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def export_study(pacs: Context, study_uid: str, out: Path, *, user: str, original: bool = False) -> Exported:
    """Write decrypted copies of the study's objects under `out` (0700 folders), audited as an Export.

    The current version of each object is written, or with `original` its version 1, as it was
    received (before any correction).
    """
    instances = pacs.archive.study_instances(study_uid)
    if original:
        instances = [pacs.archive.instance(info.sop_uid, 1) for info in instances]
    folders: set[Path] = set()
    written = 0
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, info in export_names(instances):
            target = out / name
            if target.parent not in folders:
                target.parent.mkdir(mode=0o700, exist_ok=True)
                folders.add(target.parent)
            _write_one(pacs, info, target)
            written += 1
    finally:
        pacs.audit.append(
            events.export_done(
                by=user,
                patient_id=instances[0].patient_id,
                study_uid=study_uid,
                instances=len(instances),
                written=written,
                destination=str(out.resolve()),
                original=original,
            )
        )
    return Exported(instances=len(instances), series=len(folders))
