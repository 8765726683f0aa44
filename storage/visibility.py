"""What every query of the archive leaves out: the studies in the trash, and their patients.

A study whose ``deleted_at`` is set is in the trash (:mod:`storage.trash`): C-FIND and
QIDO-RS at every level (:mod:`storage.matching`), the study list (:mod:`storage.search`)
and every retrieval through :class:`storage.archive.Archive` (WADO, the viewer, export,
C-MOVE, C-GET, forwarding) add the conditions here, so a study leaves all of them in the
same commit that trashes it. A patient is hidden while every study of theirs is in the trash.

The trash is small beside the archive: the conditions are ``NOT IN`` the trashed studies'
ids, read from the ``deleted_at`` index, so the study list keeps walking its indexes alone.

:class:`PurgeMark` tells the other processes of an archive that rows were purged, so that
their caches of row ids (:class:`storage.index.IdCache`) forget ids that may be reused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select
from sqlalchemy.orm import aliased

from storage.models import Patient, Study

_TRASHED = aliased(Study)
_LIVE = aliased(Study)


def trashed_study_ids() -> Select[Any]:
    """The row ids of the studies in the trash."""
    return select(_TRASHED.id).where(_TRASHED.deleted_at.is_not(None))


def live_study(study_id: Any = Study.id) -> ColumnElement[bool]:
    """The study of the row id `study_id` (a column) is not in the trash."""
    return study_id.not_in(trashed_study_ids())


def hidden_patient_ids() -> Select[Any]:
    """The row ids of the patients whose every study is in the trash."""
    live = exists().where(_LIVE.patient_fk == _TRASHED.patient_fk, _LIVE.deleted_at.is_(None))
    return select(_TRASHED.patient_fk).where(_TRASHED.deleted_at.is_not(None), ~live)


def live_patient(patient_id: Any = Patient.id) -> ColumnElement[bool]:
    """The patient of the row id `patient_id` (a column) has a study outside the trash."""
    return patient_id.not_in(hidden_patient_ids())


class PurgeMark:
    """A file whose change says that some process of the archive purged index rows.

    :meth:`touch` after a purge appends one byte, so the file's size counts the purges
    (a few a day: it stays small, and unlike a modification time it never misses one);
    :meth:`changed` (one ``stat``) tells a process whether one happened since it last
    asked, so it clears its id cache before using it again.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen = self._stamp()

    def _stamp(self) -> int:
        try:
            return os.stat(self._path).st_size
        except FileNotFoundError:
            return 0

    def touch(self) -> None:
        """Record that rows were purged now."""
        before = self._stamp()
        with open(self._path, "a", encoding="ascii") as mark:
            mark.write(".")
        # Our own purge needs no clearing again, unless another one came in between.
        self._seen = before + 1 if before == self._seen else -1

    def changed(self) -> bool:
        """Whether a purge happened since the last call (or since this mark was made)."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True
