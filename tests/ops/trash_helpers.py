"""Studies for the trash tests: two studies of one patient, one old study of another, and probes.

The probes ask every query path whether a study is still to be found, so a test reads
``assert found_anywhere(pacs, uid) == set()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from pacs.core.context import Context
from pacs.ops.study_trash import Actor
from storage.errors import NotFoundError
from storage.search import StudyQuery
from tests.data.make_series import make_ct_series

ADMIN = Actor("alice", "192.0.2.7")


@dataclass(frozen=True)
class TrashFiles:
    """The files of three studies: `first` and `second` of TRASH^ALICE, `old` of KEEP^BOB (2009)."""

    first: tuple[Path, ...]
    second: tuple[Path, ...]
    old: tuple[Path, ...]

    @property
    def all(self) -> list[Path]:
        return [*self.first, *self.second, *self.old]


def make_trash_files(root: Path) -> TrashFiles:
    """Write the three small studies under `root`."""
    first = make_ct_series(
        root / "first", slices=3, rows=16, columns=16, patient_name="TRASH^ALICE", patient_id="PID-T-1"
    )
    second = make_ct_series(
        root / "second",
        slices=2,
        rows=16,
        columns=16,
        patient_name="TRASH^ALICE",
        patient_id="PID-T-1",
        study_date="20240301",
    )
    old = make_ct_series(
        root / "old",
        slices=2,
        rows=16,
        columns=16,
        patient_name="KEEP^BOB",
        patient_id="PID-T-2",
        study_date="20090101",
    )
    return TrashFiles(tuple(first), tuple(second), tuple(old))


def uid_of(path: Path, keyword: str = "StudyInstanceUID") -> str:
    """One UID of the file at `path`."""
    return str(getattr(pydicom.dcmread(path, stop_before_pixels=True), keyword))


def store(pacs: Context, files: list[Path] | tuple[Path, ...]) -> None:
    """Store `files` in the archive."""
    for path in files:
        pacs.archive.store(path)


def identifier(level: str, **keys: str) -> Dataset:
    """A C-FIND identifier at `level` returning `keys` (empty values) and matching the others."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def found_anywhere(pacs: Context, files: tuple[Path, ...]) -> set[str]:
    """The query paths of the archive that still find the study of `files` (empty: none)."""
    archive = pacs.archive
    study, series, sop = (
        uid_of(files[0]),
        uid_of(files[0], "SeriesInstanceUID"),
        uid_of(files[0], "SOPInstanceUID"),
    )
    found = set()
    if archive.find("STUDY", identifier("STUDY", StudyInstanceUID=study)):
        found.add("find STUDY")
    if archive.find("SERIES", identifier("SERIES", StudyInstanceUID=study, SeriesInstanceUID="")):
        found.add("find SERIES")
    if archive.find("IMAGE", identifier("IMAGE", SeriesInstanceUID=series, SOPInstanceUID="")):
        found.add("find IMAGE")
    if any(row.study_uid == study for row in archive.search_studies(StudyQuery(limit=500))):
        found.add("study list")
    if archive.series_images(study, series):
        found.add("series images")
    if archive.current_instances([sop]):
        found.add("current instances")
    for name, probe in (("study instances", archive.study_instances), ("instance", archive.instance)):
        try:
            probe(study if name == "study instances" else sop)
            found.add(name)
        except NotFoundError:
            pass
    return found


def patient_found(pacs: Context, patient_id: str) -> list[Dataset]:
    """The PATIENT-level C-FIND answers for `patient_id`, with their number of studies."""
    return pacs.archive.find(
        "PATIENT", identifier("PATIENT", PatientID=patient_id, NumberOfPatientRelatedStudies="")
    )
