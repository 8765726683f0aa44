"""Set an archive's index schema back one migration, as the previous release left it.

Used by the tests of ``pacs migrate`` and of ``install.sh`` upgrades; the latter runs it
with the installed code (``python set_back_schema.py DATA_DIR``), so it imports nothing
from ``tests``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from pacs.core.config import load_settings
from pacs.core.context import open_database
from storage.db import MIGRATIONS
from storage.keys import KeyRing


def set_back_schema(data_dir: Path) -> str:
    """Downgrade the index of the archive in `data_dir` by one revision; return the new revision."""
    settings = load_settings(data_dir, {})
    database = open_database(settings, KeyRing.load(settings.key_dir))
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with database.engine.connect() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "-1")
            connection.commit()
        return str(database.revision())
    finally:
        database.dispose()


if __name__ == "__main__":
    print(set_back_schema(Path(sys.argv[1])))
