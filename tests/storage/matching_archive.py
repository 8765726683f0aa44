"""The hand-designed archive of the C-FIND matching tests, and queries on it.

The expectations of :mod:`tests.storage.test_matching` are written out by hand from this table,
never computed by the code under test.

Patients (PatientID, PatientName, PatientBirthDate)::

    P1  PID-001  DOE^JANE    19700101
    P2  PID-002  DOE^JOHN    19650315
    P3  PID-003  SMITH^ANNA  19800101
    P4  PID-004  ADOE^MARK   19700101

Studies (patient, StudyDate, StudyTime, AccessionNumber, StudyDescription, ReferringPhysicianName)::

    S1  P1  20240115  093000  ACC-1  CT CHEST     HOUSE^GREGORY
    S2  P1  20230610  110059  ACC-2  US ABDOMEN   house^gregory^^
    S3  P2  20240301  110100  acc-3  MR Brain     WILSON^JAMES
    S4  P3  20220101  235959  ACC-4  100%_[A]     CUDDY^LISA
    S5  P3  (empty)   (empty) ACC-5  1000 VIEWS   (empty)
    S6  P4  20240301  080000  ACC-6  PELVIS AREA  (empty)

Series (study, Modality, SeriesNumber, instances)::

    S1-CT  S1  CT  2  2        S1-MR  S1  MR  3  2
    S2-US  S2  US  1  1        S3-MR  S3  MR  3  2
    S4-CT  S4  CT  5  1        S5-MR  S5  MR  7  1
    S6-CT  S6  CT  2  1

Instance n of a series has SOP Instance UID ``<series uid>.<n>`` and InstanceNumber n.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from storage.archive import Archive
from tests.data.make_series import make_ct_series, make_mr_series, make_us_cine

ROOT = "1.2.826.0.1.3680043.9.7133.42"

S1, S2, S3, S4, S5, S6 = (f"{ROOT}.{n}" for n in range(1, 7))
ALL_STUDIES = {S1, S2, S3, S4, S5, S6}

S1_CT, S1_MR, S2_US, S3_MR, S4_CT, S5_MR, S6_CT = (
    f"{S1}.1",
    f"{S1}.2",
    f"{S2}.1",
    f"{S3}.1",
    f"{S4}.1",
    f"{S5}.1",
    f"{S6}.1",
)
ALL_SERIES = {S1_CT, S1_MR, S2_US, S3_MR, S4_CT, S5_MR, S6_CT}


def sop(series_uid: str, number: int) -> str:
    """The SOP Instance UID of instance `number` of a fixture series."""
    return f"{series_uid}.{number}"


ALL_SOPS = {
    sop(S1_CT, 1),
    sop(S1_CT, 2),
    sop(S1_MR, 1),
    sop(S1_MR, 2),
    sop(S2_US, 1),
    sop(S3_MR, 1),
    sop(S3_MR, 2),
    sop(S4_CT, 1),
    sop(S5_MR, 1),
    sop(S6_CT, 1),
}


@dataclass(frozen=True)
class PatientSpec:
    name: str
    patient_id: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class StudySpec:
    uid: str
    patient: PatientSpec
    date: str
    time: str
    accession: str
    description: str
    referring: str


@dataclass(frozen=True)
class SeriesSpec:
    uid: str
    study: StudySpec
    maker: Callable[..., list[Path]]
    count: int
    number: int
    body_part: str


P1 = PatientSpec("DOE^JANE", "PID-001", "19700101", "F")
P2 = PatientSpec("DOE^JOHN", "PID-002", "19650315", "M")
P3 = PatientSpec("SMITH^ANNA", "PID-003", "19800101", "F")
P4 = PatientSpec("ADOE^MARK", "PID-004", "19700101", "M")

STUDY_SPECS = {
    S1: StudySpec(S1, P1, "20240115", "093000", "ACC-1", "CT CHEST", "HOUSE^GREGORY"),
    S2: StudySpec(S2, P1, "20230610", "110059", "ACC-2", "US ABDOMEN", "house^gregory^^"),
    S3: StudySpec(S3, P2, "20240301", "110100", "acc-3", "MR Brain", "WILSON^JAMES"),
    S4: StudySpec(S4, P3, "20220101", "235959", "ACC-4", "100%_[A]", "CUDDY^LISA"),
    S5: StudySpec(S5, P3, "", "", "ACC-5", "1000 VIEWS", ""),
    S6: StudySpec(S6, P4, "20240301", "080000", "ACC-6", "PELVIS AREA", ""),
}

SERIES_SPECS = [
    SeriesSpec(S1_CT, STUDY_SPECS[S1], make_ct_series, 2, 2, "CHEST"),
    SeriesSpec(S1_MR, STUDY_SPECS[S1], make_mr_series, 2, 3, "HEAD"),
    SeriesSpec(S2_US, STUDY_SPECS[S2], make_us_cine, 1, 1, "ABDOMEN"),
    SeriesSpec(S3_MR, STUDY_SPECS[S3], make_mr_series, 2, 3, "HEAD"),
    SeriesSpec(S4_CT, STUDY_SPECS[S4], make_ct_series, 1, 5, "CHEST"),
    SeriesSpec(S5_MR, STUDY_SPECS[S5], make_mr_series, 1, 7, "HEAD"),
    SeriesSpec(S6_CT, STUDY_SPECS[S6], make_ct_series, 1, 2, "PELVIS"),
]


def _write_series(spec: SeriesSpec, outdir: Path) -> list[Path]:
    study, patient = spec.study, spec.study.patient
    size: dict[str, Any] = {"rows": 16, "columns": 16}
    size["frames" if spec.maker is make_us_cine else "slices"] = (
        2 if spec.maker is make_us_cine else spec.count
    )
    paths = spec.maker(
        outdir,
        **size,
        patient_name=patient.name,
        patient_id=patient.patient_id,
        study_uid=study.uid,
        series_uid=spec.uid,
        study_date=study.date or "20000101",
        accession=study.accession,
    )
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyDate = study.date
        ds.StudyTime = study.time
        ds.StudyDescription = study.description
        ds.ReferringPhysicianName = study.referring
        ds.PatientBirthDate = patient.birth_date
        ds.PatientSex = patient.sex
        ds.SeriesNumber = spec.number
        ds.BodyPartExamined = spec.body_part
        ds.SOPInstanceUID = sop(spec.uid, int(ds.InstanceNumber))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return paths


def query(**keys: Any) -> Dataset:
    """A C-FIND identifier with the given keys (values are not validated, like a peer's)."""
    identifier = Dataset()
    with pydicom.config.disable_value_validation():
        for keyword, value in keys.items():
            setattr(identifier, keyword, value)
    return identifier


UNIQUE_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


def find(archive: Archive, level: str, **keys: Any) -> list[Dataset]:
    """Run a query that also asks for the unique key of `level` (universally unless given)."""
    keys.setdefault(UNIQUE_KEY[level], "")
    return archive.find(level, query(**keys))


def matched(archive: Archive, level: str, **keys: Any) -> set[str]:
    """The unique keys of the entities at `level` that match `keys`."""
    responses = find(archive, level, **keys)
    found = [str(r[UNIQUE_KEY[level]].value) for r in responses]
    assert len(found) == len(set(found)), f"duplicate responses: {found}"
    return set(found)


def multi(value: Any) -> list[str]:
    """The values of a response element as a list, whatever its multiplicity."""
    return [str(v) for v in value] if isinstance(value, MultiValue) else [str(value)]
