"""Corrected attributes as new versions: a study's objects rewritten with some values replaced.

:func:`rewrite` takes, for each study of one change, the attributes to set (patient and study
attributes, never a UID) and writes a new version of every current instance of the study:

1. the data set before Pixel Data, read from the current blob (only its chunks), gets the
   values and an Original Attributes Sequence (0400,0561) item with those it had (PS3.3
   C.12.1, reason ``CORRECT``);
2. that header, then the bytes from Pixel Data on copied chunk by chunk from the current
   blob, go through the walker and the encrypting :class:`~storage.blobs.BlobWriter` ingest
   uses, one durable flush per object: memory holds the header and a chunk, never the pixel
   data, and no plaintext reaches the disk (a deflated object is read whole);
3. once every blob is durable, one transaction makes them current
   (:func:`storage.index.add_instance`), points each study at the patient row of its new
   values (created if new, its name, birth date and sex updated; a patient row left without
   studies goes), sets the study row's attributes and records the change in ``study_changes``.

A failure before that commit (a full disk, a damaged blob, an object changed meanwhile)
deletes every blob the change wrote: the archive is as it was. Earlier versions' blobs, the
received version 1 above all, are never touched. An instance that already holds the values
is left as it is, so a change cut short (killed between a flush and the commit) is completed
by asking it again.
"""

from __future__ import annotations

import errno
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pydicom
from pydicom.charset import convert_encodings, encode_string
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian
from sqlalchemy import Connection, insert, select, update

from storage import index, patient_rows
from storage.blobs import BlobRef, BlobStore, BlobWriter
from storage.db import Database
from storage.errors import NotFoundError, OutOfSpaceError, PacsError
from storage.frames import FrameReader
from storage.header import InstanceHeader, header_from
from storage.index import IdCache
from storage.models import Study, StudyChange
from storage.records import InstanceInfo
from storage.walker import Part10Walker

PATIENT_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYWORDS = (
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyTime",
    "StudyID",
)
EDITABLE = PATIENT_KEYWORDS + STUDY_KEYWORDS
MODIFYING_SYSTEM = "PACS CORRECTION"


class CorrectionError(PacsError):
    """A change that cannot be made as asked; nothing was changed."""


class VersionParts(Protocol):
    """What :func:`rewrite` needs of the archive: its blobs, frames, index and space check."""

    _blobs: BlobStore
    _frames: FrameReader
    _ids: IdCache
    database: Database
    max_header_bytes: int

    def hold_writer_lock(self) -> None:
        """Take the shared writer lock (clean-ups needing no writer then wait)."""

    def check_space(self, size: int = 0) -> None:
        """Raise OutOfSpaceError when `size` more bytes would pass the free-space watermark."""

    def study_instances(self, study_uid: str) -> list[InstanceInfo]:
        """The current instances of a study."""


@dataclass(frozen=True)
class StudyRewrite:
    """One study of a change and the attributes (keyword: value) its objects get."""

    study_uid: str
    values: dict[str, str]


@dataclass(frozen=True)
class ChangeRecord:
    """The ``study_changes`` row of a change, written in the transaction that makes it current."""

    kind: str
    user_id: str
    source: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)
    undoes: int | None = None  # the change this one undoes, marked undone in the same transaction


@dataclass
class Rewritten:
    """What a change did to one study: the values before and after and the versions written."""

    study_uid: str
    before: dict[str, str]
    after: dict[str, str]
    patient_key: str = ""
    instances: list[tuple[str, int, int]] = field(default_factory=list)  # (SOP UID, from, to)
    current: InstanceHeader | None = None  # the header of its first instance as it was

    def as_json(self) -> dict[str, Any]:
        """The form kept in ``study_changes.details``."""
        return {
            "study_uid": self.study_uid,
            "before": self.before,
            "after": self.after,
            "instances": [list(entry) for entry in self.instances],
        }


@dataclass(frozen=True)
class Change:
    """A change made: its ``study_changes`` id and what it did to each study."""

    id: int
    studies: list[Rewritten]

    @property
    def instances(self) -> int:
        """How many new versions it wrote."""
        return sum(len(study.instances) for study in self.studies)


@dataclass
class _Pending:
    """A new version on disk, durable, waiting for the commit that makes it current."""

    info: InstanceInfo
    header: InstanceHeader
    ref: BlobRef
    frame_map: bytes


def value_of(ds: Dataset, keyword: str) -> str:
    """The value of `keyword` in `ds` as text (empty when absent), as an edit compares it."""
    value = ds.get(keyword)
    return "" if value is None else str(value)


def check_encodable(ds: Dataset, values: dict[str, str]) -> None:
    """Raise :class:`CorrectionError` if the object's character set cannot hold a value."""
    charsets = convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 6")
    for keyword, value in values.items():
        if value.isascii():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                encode_string(value, charsets)
            except (UnicodeError, UserWarning, LookupError):
                sets = "\\".join(charsets)
                raise CorrectionError(
                    f"{keyword}: the objects' character set ({sets}) cannot hold it"
                ) from None


def corrected(ds: Dataset, values: dict[str, str], now: datetime) -> Dataset:
    """`ds` with `values` set and their previous values added to the Original Attributes Sequence."""
    previous = Dataset()
    for keyword in values:
        if keyword in ds:
            setattr(previous, keyword, ds.data_element(keyword).value)  # type: ignore[union-attr]
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    item = Dataset()
    item.ModifiedAttributesSequence = Sequence([previous])
    item.AttributeModificationDateTime = now.strftime("%Y%m%d%H%M%S.%f+0000")
    item.ModifyingSystem = MODIFYING_SYSTEM
    item.ReasonForTheAttributeModification = "CORRECT"
    item.SourceOfPreviousValues = ""
    if "OriginalAttributesSequence" not in ds:
        ds.OriginalAttributesSequence = Sequence()
    ds.OriginalAttributesSequence.append(item)
    return ds


def _encode(ds: Dataset) -> bytes:
    """`ds` (with its file meta) as a Part 10 byte string in its own transfer syntax."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _new_bytes(
    parts: VersionParts, info: InstanceInfo, values: dict[str, str], now: datetime
) -> Iterator[bytes]:
    """The bytes of the new version of `info`: the corrected header, then the rest as stored."""
    if info.transfer_syntax == DeflatedExplicitVRLittleEndian:
        whole = pydicom.dcmread(io.BytesIO(b"".join(parts._blobs.read(info.ref))))
        yield _encode(corrected(whole, values, now))
        return
    found = parts._frames.frame_map(info)
    head = parts._frames.dataset_without_pixels(info)
    yield _encode(corrected(head, values, now))
    yield from parts._blobs.read_range(info.ref, found.dataset_start + found.pixel_start, info.size)


def _write_version(
    parts: VersionParts, info: InstanceInfo, values: dict[str, str], now: datetime
) -> _Pending:
    """Write the new version of `info` into a durable blob; the blob is removed if this fails."""
    parts.check_space(info.size)
    walker = Part10Walker(max_header=parts.max_header_bytes)
    writer: BlobWriter = parts._blobs.writer()
    try:
        for chunk in _new_bytes(parts, info, values, now):
            walker.feed(chunk)
            writer.write(chunk)
        walked = walker.close()
        ref = writer.commit()
    except BaseException as exc:
        writer.abort()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OutOfSpaceError("disk full while writing a corrected version: nothing was changed") from exc
        raise
    return _Pending(info, walked.header(), ref, walked.frame_map.pack())


def _header_of(ds: Dataset, transfer_syntax: str) -> InstanceHeader:
    """The index header of the data set `ds` (read from a stored object)."""
    implicit, little = ds.original_encoding
    elements = dict(ds.items())
    return header_from(
        elements, transfer_syntax, implicit=bool(implicit), little_endian=bool(little), pixel_data_length=None
    )


def _needs_rewrite(parts: VersionParts, info: InstanceInfo, values: dict[str, str]) -> tuple[bool, Dataset]:
    """Whether the current version of `info` lacks some of `values`, with its data set before pixels."""
    head = parts._frames.dataset_without_pixels(info)
    return any(value_of(head, keyword) != value for keyword, value in values.items()), head


def _check_study(parts: VersionParts, study_uid: str) -> list[InstanceInfo]:
    """The current instances of a study that may be corrected; raise why not."""
    with parts.database.read() as session:
        deleted = session.execute(select(Study.deleted_at).where(Study.study_uid == study_uid)).one_or_none()
    if deleted is None:
        raise NotFoundError(f"no study {study_uid}")
    if deleted[0] is not None:
        raise CorrectionError(f"study {study_uid} is in the trash: restore it before correcting it")
    return parts.study_instances(study_uid)


def _write_study(
    parts: VersionParts, plan: StudyRewrite, now: datetime, pending: list[_Pending]
) -> Rewritten:
    """Write the new versions of one study's instances (appended to `pending`); what it will change."""
    infos = _check_study(parts, plan.study_uid)
    done = Rewritten(plan.study_uid, before={}, after=dict(plan.values))
    for info in infos:
        needed, head = _needs_rewrite(parts, info, plan.values)
        if not done.before:
            done.before = {keyword: value_of(head, keyword) for keyword in plan.values}
            done.current = _header_of(head, info.transfer_syntax)
        if needed:
            check_encodable(head, plan.values)
            pending.append(_write_version(parts, info, plan.values, now))
    return done


def rewrite(parts: VersionParts, plans: list[StudyRewrite], record: ChangeRecord) -> Change:
    """Make `plans` the current versions of their studies as one change; return its id and what it did.

    See the module docstring. Raises :class:`CorrectionError` for a study in the trash or
    changed meanwhile, :class:`NotFoundError` for an unknown study, and what writing raises
    (OutOfSpaceError for a full disk); nothing is changed then.
    """
    for plan in plans:
        bad = sorted(set(plan.values) - set(EDITABLE))
        if bad:
            raise CorrectionError(f"{', '.join(bad)} cannot be corrected")
    now = datetime.now(UTC)
    pending: list[_Pending] = []
    parts.hold_writer_lock()
    try:
        studies = [_write_study(parts, plan, now, pending) for plan in plans]
        if not pending and all(study.before == study.after for study in studies):
            raise CorrectionError("nothing to change: the objects already hold these values")
        with parts.database.write_connection() as connection:
            change_id = _commit(connection, pending, studies, record, now)
    except BaseException:
        for written in pending:
            parts._blobs.delete(written.ref.blob_id)
        raise
    finally:
        parts._ids.clear()  # patient rows were re-pointed or deleted
    return Change(change_id, studies)


def _commit(
    connection: Connection,
    pending: list[_Pending],
    studies: list[Rewritten],
    record: ChangeRecord,
    now: datetime,
) -> int:
    """Index the new versions, re-point the studies and record the change (inside one transaction)."""
    by_study: dict[str, InstanceHeader] = {}
    for written in pending:
        current = index.current_version(connection, written.info.sop_uid)
        if current is None or current.version != written.info.version:
            raise CorrectionError(f"instance {written.info.sop_uid} changed meanwhile: nothing was changed")
        version, _, _ = index.add_instance(
            connection, written.header, written.ref, frame_map=written.frame_map
        )
        by_study.setdefault(written.header.study_uid, written.header)
        study = next(done for done in studies if done.study_uid == written.header.study_uid)
        study.instances.append((written.info.sop_uid, written.info.version, version))
    for study in studies:
        header = by_study.get(study.study_uid, study.current)
        assert header is not None  # a study has instances
        study.patient_key = patient_rows.place_study(connection, header, now)
    details = {**record.extra, "studies": [study.as_json() for study in studies]}
    row = {
        "changed_at": now,
        "kind": record.kind,
        "study_uid": studies[0].study_uid if studies else "",
        "patient_key": studies[0].patient_key if studies else "",
        "user_id": record.user_id,
        "source": record.source,
        "reason": record.reason,
        "details": json.dumps(details, sort_keys=True),
    }
    change_id = connection.execute(insert(StudyChange).values(**row).returning(StudyChange.id)).scalar_one()
    if record.undoes is not None:
        marked = update(StudyChange).where(StudyChange.id == record.undoes, StudyChange.undone_by.is_(None))
        if connection.execute(marked.values(undone_by=change_id)).rowcount != 1:
            raise CorrectionError(f"change {record.undoes} was undone meanwhile: nothing was changed")
    return change_id
