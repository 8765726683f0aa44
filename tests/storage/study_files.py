"""Small DICOM objects with the patient and study attributes a study-list test needs.

Each object is a one-slice 8x8 CT (:mod:`tests.data.make_series`) or, with ``frames``, an
ultrasound cine of that many frames, rewritten with the attributes given (UTF-8, so any
name can be stored) and fresh UIDs unless a study or series UID is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

from tests.data.make_series import make_ct_series, make_us_cine


@dataclass(frozen=True)
class Spec:
    """The attributes of one object (empty ones are written empty)."""

    name: str = "DOE^JANE"
    patient_id: str = "PID-1"
    birth_date: str = "19700101"
    sex: str = "F"
    study_date: str = "20240115"
    study_time: str = "093000"
    accession: str = "ACC-1"
    description: str = "CT CHEST"
    study_uid: str = field(default_factory=generate_uid)
    series_uid: str = field(default_factory=generate_uid)
    age: str | None = None  # Patient's Age; absent when None
    frames: int = 0  # 0: a single-frame CT; else a cine of this many frames


def write(directory: Path, spec: Spec, **changes: Any) -> Path:
    """One object of `spec` (an UID-fresh single object) in `directory`; `changes` are more attributes."""
    directory.mkdir(parents=True, exist_ok=True)
    scratch = directory / f"made-{generate_uid()}"
    if spec.frames:
        (made,) = make_us_cine(scratch, frames=spec.frames, rows=8, columns=8)
    else:
        (made,) = make_ct_series(scratch, slices=1, rows=8, columns=8)
    ds = pydicom.dcmread(made)
    ds.SpecificCharacterSet = "ISO_IR 192"
    values = {
        "PatientName": spec.name,
        "PatientID": spec.patient_id,
        "PatientBirthDate": spec.birth_date,
        "PatientSex": spec.sex,
        "StudyDate": spec.study_date,
        "StudyTime": spec.study_time,
        "AccessionNumber": spec.accession,
        "StudyDescription": spec.description,
        "StudyInstanceUID": spec.study_uid,
        "SeriesInstanceUID": spec.series_uid,
        "SOPInstanceUID": generate_uid(),
        **changes,
    }
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    if spec.age is not None:
        ds.PatientAge = spec.age
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    target = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(target, enforce_file_format=True)
    made.unlink()
    return target
