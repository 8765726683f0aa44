"""The DICOM JSON texts kept in the index (``instances.dicom_json``), read for a series at once.

:meth:`JsonTexts.texts` gives the texts of many instances (:mod:`storage.instance_json`): those
kept are fetched together, one query per :data:`QUERY_BATCH`, and opened (each is sealed beside
its blob, so a text altered in the index fails authentication); those not kept (written before
the column existed, a correction's new version, a re-indexed object, a head too large to keep at
ingest) are built from their headers (:meth:`storage.frames.FrameReader.data_sets`) and kept for
the next time. Keeping them is best effort: when the index cannot be written, the texts are
still given.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy import exc as sa_exc

from storage.blobs import BlobStore
from storage.db import Database
from storage.frames import FrameReader
from storage.instance_json import PURPOSE, instance_path, instance_text
from storage.models import Instance
from storage.records import InstanceInfo

QUERY_BATCH = 500
_COLUMNS = Instance.__table__.c
_KEEP = (
    update(Instance.__table__)
    .where(_COLUMNS.blob_id == bindparam("blob"), _COLUMNS.dicom_json.is_(None))
    .values(dicom_json=bindparam("sealed"))
)


def keep_text(connection: Connection, blob_id: str, sealed: bytes | None) -> None:
    """Keep the `sealed` text of the instance in `blob_id` (on `connection`'s transaction), unless None."""
    if sealed is not None:
        connection.execute(_KEEP, {"blob": blob_id, "sealed": sealed})


class JsonTexts:
    """The kept DICOM JSON texts of an archive's instances; see the module docstring."""

    def __init__(self, database: Database, blobs: BlobStore, frames: FrameReader) -> None:
        self._database = database
        self._blobs = blobs
        self._frames = frames

    def texts(self, infos: Sequence[InstanceInfo]) -> list[str]:
        """The texts of `infos`, in order, their URIs under :data:`storage.instance_json.ROOT`.

        Raises :class:`~storage.errors.NotFoundError` when a blob to build one from is gone and
        :class:`~storage.crypto.IntegrityError` when a kept text or a blob was altered.
        """
        found = self._kept(infos)
        missing = [info for info in infos if info.ref.blob_id not in found]
        if missing:
            found.update(self._built(missing))
        return [found[info.ref.blob_id] for info in infos]

    def _kept(self, infos: Sequence[InstanceInfo]) -> dict[str, str]:
        refs = {info.ref.blob_id: info.ref for info in infos}
        ids = list(refs)
        found: dict[str, str] = {}
        for first in range(0, len(ids), QUERY_BATCH):
            query = select(Instance.blob_id, Instance.dicom_json).where(
                Instance.blob_id.in_(ids[first : first + QUERY_BATCH]), Instance.dicom_json.is_not(None)
            )
            with self._database.read() as session:
                rows = session.execute(query).all()
            for blob_id, sealed in rows:
                found[blob_id] = self._blobs.open_beside(refs[blob_id], PURPOSE, sealed).decode()
        return found

    def _built(self, infos: list[InstanceInfo]) -> dict[str, str]:
        built: dict[str, str] = {}
        for info, ds in zip(infos, self._frames.data_sets(infos), strict=True):
            path = instance_path(info.study_uid, info.series_uid, info.sop_uid)
            built[info.ref.blob_id] = instance_text(ds, info.transfer_syntax, path)
        seal = self._blobs.seal_beside
        rows = [
            {"blob": info.ref.blob_id, "sealed": seal(info.ref, PURPOSE, built[info.ref.blob_id].encode())}
            for info in infos
        ]
        try:
            with self._database.write() as session:
                session.execute(_KEEP, rows)
        except sa_exc.DBAPIError:
            pass  # kept next time; the texts are right either way
        return built
