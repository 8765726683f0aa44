"""Migration 0008 on both backends: an index of revision 0007 gets its name words and frame counts.

Rows are written as revision 0007 knew them (plain SQL), the schema is upgraded, and the
study list's search then finds the patients by their name words, with the frames of the
current instances counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, Connection, bindparam, select, text

from storage.db import MIGRATIONS, Database
from storage.models import PatientWord, Series, Study
from storage.search import StudyQuery, find_studies

PATIENTS = [(1, "DOE^JANE", "P1"), (2, "MÜLLER^JOSÉ", "P2")]
STUDIES = [(1, 1, "1.2.1"), (2, 2, "1.2.2")]
SERIES = [(1, 1, "1.3.1"), (2, 1, "1.3.2"), (3, 2, "1.3.3")]
# (id, series, frames, current): series 1 has 1 + 40 frames current and an old version of 10.
INSTANCES = [(1, 1, 1, True), (2, 1, 40, True), (3, 1, 10, False), (4, 2, 3, True)]
BORN = {"birth_date": "19700101", "sex": "F"}
STUDY = {"study_date": "20240101", "study_time": "", "accession": "", "study_id": "", "description": ""}
STUDY |= {"referring_name": "", "referring_norm": "", "modalities": "CT", "num_series": 1, "num_instances": 1}
ONE_SERIES = {"modality": "CT", "series_number": 1, "description": "", "body_part": "", "num_instances": 1}
INSTANCE = {"version": 1, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "instance_number": 1}
INSTANCE |= {"transfer_syntax": "1.2.840.10008.1.2.1", "rows": 8, "columns": 8, "key_version": 1}
INSTANCE |= {"wrapped_key": b"k", "size": 1, "sha256": "", "pixel_data_short": False}


@pytest.fixture
def database(db_url: str, tmp_path: Path) -> Iterator[Database]:
    opened = Database.open(db_url, sqlite_path=tmp_path / "index.db", sqlite_key=os.urandom(32))
    yield opened
    opened.dispose()


def _insert(connection: Connection, table: str, row: dict[str, Any]) -> None:
    """INSERT `row` into `table` naming only its columns, as revision 0007's schema has them."""
    names = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    statement = text(f"INSERT INTO {table} ({names}) VALUES ({values})")
    if "is_current" in row:
        flags = (bindparam("is_current", type_=Boolean), bindparam("pixel_data_short", type_=Boolean))
        statement = statement.bindparams(*flags)
    connection.execute(statement, row)


def _head() -> str:
    """The newest revision, which ``migrate()`` upgrades to (0008 and every one after it)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _fill_as_of_0007(database: Database) -> None:
    now = datetime.now(UTC)
    with database.engine.begin() as connection:
        for pk, name, patient_id in PATIENTS:
            patient = {"id": pk, "patient_key": f"id:\\{patient_id}", "patient_id": patient_id, "issuer": ""}
            _insert(connection, "patients", {**patient, "name": name, "name_norm": name.upper(), **BORN})
        for pk, patient_fk, uid in STUDIES:
            _insert(
                connection,
                "studies",
                {"id": pk, "study_uid": uid, "patient_fk": patient_fk, **STUDY, "updated_at": now},
            )
        for pk, study_fk, uid in SERIES:
            _insert(connection, "series", {"id": pk, "series_uid": uid, "study_fk": study_fk, **ONE_SERIES})
        for pk, series_fk, frames, current in INSTANCES:
            row = {"id": pk, "sop_uid": f"1.4.{pk}", "is_current": current, "series_fk": series_fk}
            _insert(
                connection,
                "instances",
                {**row, "frames": frames, "blob_id": f"b{pk}", **INSTANCE, "received_at": now},
            )


def test_the_upgrade_fills_the_name_words_and_the_frame_counts(database: Database) -> None:
    database.migrate("0007")
    _fill_as_of_0007(database)
    assert database.migrate() == ("0007", _head())
    with database.read() as session:
        words = session.execute(
            select(PatientWord.patient_fk, PatientWord.word).order_by(PatientWord.word)
        ).all()
        assert [tuple(row) for row in words] == [(1, "doe"), (1, "jane"), (2, "jose"), (2, "muller")]
        series = session.execute(select(Series.id, Series.num_frames).order_by(Series.id)).all()
        assert [tuple(row) for row in series] == [(1, 41), (2, 3), (3, 0)]
        studies = session.execute(
            select(Study.id, Study.num_frames, Study.patient_age).order_by(Study.id)
        ).all()
        assert [tuple(row) for row in studies] == [(1, 44, ""), (2, 0, "")]
        (found,) = find_studies(session, StudyQuery(name="José Müller"))
        assert (found.study_uid, found.frames) == ("1.2.2", 0)
        assert [row.study_uid for row in find_studies(session, StudyQuery(name="jane"))] == ["1.2.1"]


def test_the_downgrade_returns_to_0007(database: Database) -> None:
    database.migrate()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
        connection.commit()
    assert database.revision() == "0007"
    assert "patient_words" not in database.table_names()
    assert database.migrate() == ("0007", _head())
