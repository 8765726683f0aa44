"""Migration 0010 on both backends: instances indexed before it have no frame map, and get one on first need.

An object is stored, the index is taken down to revision 0009 (the column and the map go, as
for a row written before 0010) and up again: the row's map is then empty, the object's frames
still read right, and the map the archive finds by walking the blob is stored in the row.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import select

from pacs.core.context import Context, open_pacs
from storage.db import MIGRATIONS
from storage.models import Instance
from tests.storage.test_frame_map import packed_map, stored_frames


def _downgrade_to_0009(pacs: Context) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with pacs.database.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
        connection.commit()


def test_an_instance_indexed_before_0010_gets_its_frame_map_on_first_need(pacs: Context) -> None:
    info, frames = stored_frames(pacs, 3)
    recorded = packed_map(pacs, info.sop_uid)
    _downgrade_to_0009(pacs)
    assert pacs.database.revision() == "0009"
    assert pacs.database.migrate() == ("0009", pacs.database.revision())
    with pacs.database.read() as session:
        assert session.scalar(select(Instance.frame_map).where(Instance.sop_uid == info.sop_uid)) is None
    reopened = open_pacs(pacs.settings)
    try:
        assert [reopened.archive.frame_bytes(info, n) for n in (1, 3)] == [frames[0], frames[2]]
    finally:
        reopened.close()
    assert packed_map(pacs, info.sop_uid) == recorded
