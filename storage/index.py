"""Writing and reading index rows: patients, studies, series and instance versions.

The writers take a connection or session inside a write transaction from
:meth:`storage.db.Database.write_connection` or :meth:`~storage.db.Database.write`;
the caller commits. Creating a patient, study
or series tolerates a concurrent writer creating the same one (PostgreSQL), and the
per-study and per-series counts (instances and frames) always describe the current version
of each instance. A new patient's name words go to ``patient_words`` (:mod:`storage.search`).
A study's Timezone Offset From UTC is the first one an object stored in it carries.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    DateTime,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage import search
from storage.blobs import BlobRef
from storage.header import InstanceHeader, normalise_name
from storage.models import Instance, Patient, Series, Study


class StoreOutcome(enum.Enum):
    """What storing an object did to the index."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    NEW_VERSION = "new version"


@dataclass(frozen=True)
class StoreResult:
    """What :meth:`Archive.store` did with one object."""

    outcome: StoreOutcome
    sop_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    version: int
    size: int
    sha256: str
    pixel_data_short: bool = False

    @classmethod
    def of(
        cls, outcome: StoreOutcome, header: InstanceHeader, version: int, size: int, sha256: str
    ) -> StoreResult:
        """What storing the object of `header` did, for the caller."""
        return cls(
            outcome=outcome,
            sop_uid=header.sop_uid,
            sop_class_uid=header.sop_class_uid,
            study_uid=header.study_uid,
            series_uid=header.series_uid,
            patient_id=header.patient_id,
            patient_name=header.patient_name,
            version=version,
            size=size,
            sha256=sha256,
            pixel_data_short=header.pixel_data_short,
        )


def patient_key(header: InstanceHeader) -> str:
    """The identity of a patient: issuer and Patient ID, or name and birth date without an ID."""
    if header.patient_id:
        return f"id:{header.issuer}\\{header.patient_id}"
    return f"name:{normalise_name(header.patient_name)}\\{header.birth_date}"


@dataclass(frozen=True)
class CurrentVersion:
    """The current version of a SOP instance, as far as storing a new one cares."""

    id: int
    version: int
    sha256: str
    series_fk: int
    frames: int


class IdCache:
    """Row ids of recently used patients, studies and series, to skip their lookups.

    Only ids of committed rows are remembered (:meth:`remember` after the commit). A
    remembered row that was deleted meanwhile makes the insert fail on its foreign
    key; callers then clear the cache and try once more. Safe to share between threads.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, key: str) -> int | None:
        """The remembered id of the `kind` row with `key`."""
        return self._ids.get((kind, key))

    def remember(self, learned: dict[tuple[str, str], int]) -> None:
        """Remember ids that a committed transaction used."""
        with self._lock:
            if len(self._ids) + len(learned) > self._size:
                self._ids.clear()
            self._ids.update(learned)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._ids.clear()


def _get_or_insert(
    session: Connection, table: Table, key: ColumnElement[bool], values: dict[str, Any]
) -> tuple[int, bool]:
    """The id of the row matching `key`, inserting `values` first if there is none."""
    found = session.execute(select(table.c.id).where(key)).scalar_one_or_none()
    if found is not None:
        return found, False
    try:
        with session.begin_nested():
            return session.execute(insert(table).values(**values).returning(table.c.id)).scalar_one(), True
    except IntegrityError:
        found = session.execute(select(table.c.id).where(key)).scalar_one_or_none()
        if found is None:
            raise
        return found, False


def _patient_id(session: Connection, header: InstanceHeader) -> int:
    key = patient_key(header)
    table = Patient.__table__
    row_id, created = _get_or_insert(
        session,
        table,
        table.c.patient_key == key,
        {
            "patient_key": key,
            "patient_id": header.patient_id,
            "issuer": header.issuer,
            "name": header.patient_name,
            "name_norm": normalise_name(header.patient_name),
            "birth_date": header.birth_date,
            "sex": header.sex,
        },
    )
    if created:
        search.add_name_words(session, row_id, header.patient_name)
    return row_id


def patient_row(connection: Connection, header: InstanceHeader) -> int:
    """The id of the patient row of `header`'s patient key, created (with its name words) if new."""
    return _patient_id(connection, header)


def _study_id(session: Connection, header: InstanceHeader, patient_fk: int, now: datetime) -> int:
    table = Study.__table__
    row_id, _ = _get_or_insert(
        session,
        table,
        table.c.study_uid == header.study_uid,
        {
            "study_uid": header.study_uid,
            "patient_fk": patient_fk,
            "study_date": header.study_date,
            "study_time": header.study_time.replace(":", ""),
            "accession": header.accession,
            "study_id": header.study_id,
            "description": header.study_description,
            "referring_name": header.referring_name,
            "referring_norm": normalise_name(header.referring_name),
            "modalities": "",
            "patient_age": header.patient_age,
            "num_series": 0,
            "num_instances": 0,
            "num_frames": 0,
            "updated_at": now,
        },
    )
    return row_id


def _series_id(session: Connection, header: InstanceHeader, study_fk: int) -> int:
    table = Series.__table__
    row_id, created = _get_or_insert(
        session,
        table,
        table.c.series_uid == header.series_uid,
        {
            "series_uid": header.series_uid,
            "study_fk": study_fk,
            "modality": header.modality,
            "series_number": header.series_number,
            "description": header.series_description,
            "body_part": header.body_part,
            "num_instances": 0,
            "num_frames": 0,
        },
    )
    if created:
        # Lock the study row (PostgreSQL) so concurrent new series cannot lose a modality.
        session.execute(select(Study.id).where(Study.id == study_fk).with_for_update())
        modalities = session.scalars(
            select(Series.modality).where(Series.study_fk == study_fk, Series.modality != "").distinct()
        ).all()
        session.execute(
            update(Study)
            .where(Study.id == study_fk)
            .values(num_series=Study.num_series + 1, modalities="\\".join(sorted(modalities)))
            .execution_options(synchronize_session=False)
        )
    return row_id


def _cached(
    cache: IdCache | None, learned: dict[tuple[str, str], int], kind: str, key: str, lookup: Callable[[], int]
) -> int:
    found = cache.get(kind, key) if cache is not None else None
    if found is None:
        found = lookup()
    learned[(kind, key)] = found
    return found


# The hot path of every store, as plain statements compiled once (the ORM costs more
# than the database here).
_CURRENT = text(
    "SELECT id, version, sha256, series_fk, frames FROM instances "
    "WHERE sop_uid = :sop_uid AND is_current = :current"
).bindparams(bindparam("current", type_=Boolean))
_HELD = text("SELECT MAX(version) FROM instances WHERE sop_uid = :sop_uid AND sha256 = :sha256")
_SUPERSEDE = text("UPDATE instances SET is_current = :current WHERE id = :id").bindparams(
    bindparam("current", type_=Boolean)
)
_INSERT = insert(Instance)
_COUNT_SERIES = text(
    "UPDATE series SET num_instances = num_instances + :delta, num_frames = num_frames + :frames "
    "WHERE id = :series"
)
_COUNT_STUDY = text(
    "UPDATE studies SET num_instances = num_instances + :delta, num_frames = num_frames + :frames, "
    "timezone_offset = COALESCE(timezone_offset, :timezone), "
    "updated_at = :now WHERE id = (SELECT study_fk FROM series WHERE id = :series)"
).bindparams(bindparam("now", type_=DateTime(timezone=True)), bindparam("timezone", type_=String(5)))


def _count(
    connection: Connection,
    series_fk: int,
    delta: int,
    frames: int,
    now: datetime,
    timezone: str | None = None,
) -> None:
    """Add `delta` instances of `frames` frames in all to the counts of a series and its study;
    a `timezone` offset becomes the study's if it has none yet."""
    counts = {"delta": delta, "frames": frames, "series": series_fk}
    connection.execute(_COUNT_SERIES, counts)
    connection.execute(_COUNT_STUDY, {**counts, "now": now, "timezone": timezone})


def current_version(connection: Connection, sop_uid: str) -> CurrentVersion | None:
    """The current version of `sop_uid`, if the index has one."""
    row = connection.execute(_CURRENT, {"sop_uid": sop_uid, "current": True}).one_or_none()
    return CurrentVersion(*row) if row is not None else None


def held_version(connection: Connection, sop_uid: str, sha256: str) -> int | None:
    """The latest version of `sop_uid` whose content is exactly `sha256`, current or not."""
    version: int | None = connection.execute(_HELD, {"sop_uid": sop_uid, "sha256": sha256}).scalar()
    return version


def add_instance(
    connection: Connection,
    header: InstanceHeader,
    ref: BlobRef,
    cache: IdCache | None = None,
    *,
    received_at: datetime | None = None,
    frame_map: bytes | None = None,
) -> tuple[int, StoreOutcome, dict[tuple[str, str], int]]:
    """Record a stored blob as the current version of its SOP instance.

    Returns the version, the outcome and the row ids used, for `cache` to remember
    once the transaction has committed.

    If any version already has the same SHA-256 nothing is added and that version is
    returned with :attr:`StoreOutcome.DUPLICATE` (the caller discards the new blob): an
    object sent again after a correction leaves the corrected version current. A different
    object with the same SOP Instance UID becomes a new version;
    the old one is kept, no longer current. `received_at` defaults to now; `frame_map`
    is the packed :class:`storage.framemap.FrameMap` of the object.
    """
    now = datetime.now(UTC)
    previous = current_version(connection, header.sop_uid)
    if previous is not None:
        held = previous.version if previous.sha256 == ref.sha256 else None
        held = held or held_version(connection, header.sop_uid, ref.sha256)
        if held is not None:
            return held, StoreOutcome.DUPLICATE, {}
    learned: dict[tuple[str, str], int] = {}
    patient_fk = _cached(
        cache, learned, "patient", patient_key(header), lambda: _patient_id(connection, header)
    )
    study_fk = _cached(
        cache, learned, "study", header.study_uid, lambda: _study_id(connection, header, patient_fk, now)
    )
    series_fk = _cached(
        cache, learned, "series", header.series_uid, lambda: _series_id(connection, header, study_fk)
    )
    version = 1
    if previous is not None:
        version = previous.version + 1
        connection.execute(_SUPERSEDE, {"id": previous.id, "current": False})
        _count(connection, previous.series_fk, -1, -previous.frames, now)
    row = _instance_row(header, ref, version, series_fk, received_at or now)
    connection.execute(_INSERT, {**row, "frame_map": frame_map})
    _count(connection, series_fk, +1, header.frames, now, header.timezone_offset)
    return version, (StoreOutcome.NEW_VERSION if previous is not None else StoreOutcome.STORED), learned


def _instance_row(
    header: InstanceHeader, ref: BlobRef, version: int, series_fk: int, received_at: datetime
) -> dict[str, Any]:
    """The values of a new, current ``instances`` row."""
    return {
        "sop_uid": header.sop_uid,
        "version": version,
        "is_current": True,
        "series_fk": series_fk,
        "sop_class_uid": header.sop_class_uid,
        "instance_number": header.instance_number,
        "transfer_syntax": header.transfer_syntax,
        "frames": header.frames,
        "rows": header.rows,
        "columns": header.columns,
        "bits_allocated": header.bits_allocated,
        "blob_id": ref.blob_id,
        "key_version": ref.key_version,
        "wrapped_key": ref.wrapped_key,
        "size": ref.size,
        "sha256": ref.sha256,
        "received_at": received_at,
        "pixel_data_short": header.pixel_data_short,
    }


def delete_study(session: Session, study: Study) -> list[str]:
    """Delete a study with all its series and instance versions; return the freed blob ids.

    The patient goes too when this was their last study.
    """
    series_ids = select(Series.id).where(Series.study_fk == study.id)
    blob_ids = list(session.scalars(select(Instance.blob_id).where(Instance.series_fk.in_(series_ids))))
    session.execute(delete(Instance).where(Instance.series_fk.in_(series_ids)))
    session.execute(delete(Series).where(Series.study_fk == study.id))
    session.execute(delete(Study).where(Study.id == study.id))
    remaining = session.scalar(select(func.count(Study.id)).where(Study.patient_fk == study.patient_fk))
    if not remaining:
        search.remove_name_words(session, study.patient_fk)
        session.execute(delete(Patient).where(Patient.id == study.patient_fk))
    return blob_ids


def blob_ref(instance: Instance) -> BlobRef:
    """Where the blob of an index row is and how to open it."""
    return BlobRef(
        instance.blob_id, instance.key_version, instance.wrapped_key, instance.size, instance.sha256
    )
