"""The records the archive answers with: an indexed instance, a series' image, a deleted study."""

from __future__ import annotations

from dataclasses import dataclass

from storage.blobs import BlobRef


@dataclass(frozen=True)
class InstanceInfo:
    """The index entry of one stored instance version."""

    sop_uid: str
    sop_class_uid: str
    version: int
    transfer_syntax: str
    size: int
    sha256: str
    study_uid: str
    series_uid: str
    patient_id: str
    ref: BlobRef


@dataclass(frozen=True)
class SeriesImage:
    """One image of a series as a viewer lists it."""

    sop_uid: str
    instance_number: int | None
    frames: int | None
    rows: int | None
    columns: int | None
    sop_class_uid: str


@dataclass(frozen=True)
class DeletedStudy:
    """What :meth:`Archive.delete_study` removed."""

    study_uid: str
    patient_id: str
    instances: int
