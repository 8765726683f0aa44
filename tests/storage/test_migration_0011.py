"""Migration 0011 on both backends: Bits Allocated per instance and Timezone Offset From UTC per study.

An object that carries both is stored, the index is taken down to revision 0010 (the columns
go, as for rows written before 0011) and up again: those rows hold NULL (nothing reads the
blobs for them), and re-indexing the object from its blob fills both in again.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select

from pacs.core.context import Context
from storage import reindex
from storage.db import MIGRATIONS, Database
from storage.models import Instance, Series, Study
from tests.data.make_series import make_ct_series
from tests.storage.test_ingest_crash import lose_index_rows


def downgrade(database: Database, revision: str) -> None:
    """Take the schema of `database` down to `revision`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


def _recorded(pacs: Context, sop_uid: str) -> tuple[int | None, str | None]:
    """The Bits Allocated of `sop_uid`'s row and the Timezone Offset From UTC of its study's row."""
    with pacs.database.read() as session:
        row = session.execute(
            select(Instance.bits_allocated, Study.timezone_offset)
            .join(Series, Instance.series_fk == Series.id)
            .join(Study, Series.study_fk == Study.id)
            .where(Instance.sop_uid == sop_uid, Instance.is_current.is_(True))
        ).one()
    return row[0], row[1]


def _columns(pacs: Context, table: str) -> set[str]:
    return {column["name"] for column in inspect(pacs.database.engine).get_columns(table)}


def test_rows_indexed_before_0011_hold_null_until_reindexed_from_their_blobs(
    pacs: Context, tmp_path: Path
) -> None:
    (path,) = make_ct_series(tmp_path, slices=1, rows=16, columns=16)
    ds = pydicom.dcmread(path)
    ds.TimezoneOffsetFromUTC = "+0100"
    ds.save_as(path)
    sop_uid = pacs.archive.store(path).sop_uid
    assert _recorded(pacs, sop_uid) == (16, "+0100")
    downgrade(pacs.database, "0010")
    assert "bits_allocated" not in _columns(pacs, "instances")
    assert "timezone_offset" not in _columns(pacs, "studies")
    assert pacs.database.migrate("0011") == ("0010", "0011")
    assert _recorded(pacs, sop_uid) == (None, None)
    pacs.database.migrate()  # as the next start does; the later revisions leave the rows as they are
    assert _recorded(pacs, sop_uid) == (None, None)
    lose_index_rows(pacs, [sop_uid])
    assert [r.sop_uid for r in reindex.sweep(pacs.archive, remove=False, alone=True).reindexed] == [sop_uid]
    assert _recorded(pacs, sop_uid) == (16, "+0100")
