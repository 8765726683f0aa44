"""The study list's search (storage.search) on both index backends, and the index rows it relies on.

Name words in any order, case- and accent-insensitive; parts of patient IDs and accession
numbers; every sort in both directions, total and stable across pages; both ways a
criterion is applied (the ids of the few rows that meet it, or a filter on the walk) give
the same rows; the words and frame counts kept at ingest, on a new version, on deletion
and by the re-index sweep.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from pacs.core.context import Context
from storage import reindex, search
from storage.models import Instance, PatientWord, Series, Study
from storage.search import StudyQuery
from tests.storage.study_files import Spec, write

DOE = Spec("DOE^JANE", "PID-1001", "19700101", "F", "20240220", "101500", "ACC-2024-0042")
JOSE = Spec("GARCÍA MÁRQUEZ^JOSÉ^ANTONIO^DR^JR", "MRN-77", "19550505", "M", "20230301", "080000", "X-9")
YAMADA = Spec("Yamada^Tarou=山田^太郎=やまだ^たろう", "JP-5", "19800202", "M", "20220101", "120000", "JP-ACC")
SMITH = Spec("SMITH^JANICE", "PID-2002", "19900303", "F", "20240220", "101500", "ACC-2024-0100")
NAMELESS = Spec("", "", "", "", "20210707", "", "")
ALL = (DOE, JOSE, YAMADA, SMITH, NAMELESS)


@pytest.fixture
def archive(pacs: Context, tmp_path: Path) -> Context:
    """The archive with ALL stored, and a second, older study of DOE^JANE."""
    for spec in ALL:
        pacs.archive.store(write(tmp_path / "in", spec))
    older = Spec(DOE.name, DOE.patient_id, DOE.birth_date, DOE.sex, "20190101", "070000", "ACC-2019-0001")
    pacs.archive.store(write(tmp_path / "in", older))
    return pacs


def _accessions(pacs: Context, **criteria: object) -> list[str]:
    return [row.accession for row in pacs.archive.search_studies(StudyQuery(**criteria))]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DOE^JANE", ["doe", "jane"]),
        ("  Doe ^ Jane  Mary ", ["doe", "jane", "mary"]),
        ("GARCÍA MÁRQUEZ^JOSÉ", ["garcia", "marquez", "jose"]),
        ("MÜLLER-LÜDENSCHEIDT^STRAẞE", ["muller", "ludenscheidt", "strasse"]),
        ("O'BRIEN^SEÁN", ["obrien", "sean"]),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", ["yamada", "tarou", "山田", "太郎", "やまた", "たろう"]),
        ("DOE^JANE^^^DOE", ["doe", "jane"]),
        ("", []),
    ],
)
def test_a_name_falls_into_folded_words_of_every_group_and_component(name: str, expected: list[str]) -> None:
    assert search.words(name) == expected


@pytest.mark.parametrize("typed", ["jane", "JANE", "doe jane", "Jane Doe", "do ja", "doe^jane", "Doe, Jane"])
def test_any_start_of_the_name_words_in_any_order_finds_the_patient(archive: Context, typed: str) -> None:
    assert _accessions(archive, name=typed) == ["ACC-2024-0042", "ACC-2019-0001"]


@pytest.mark.parametrize("typed", ["jose garcia", "Márquez", "MARQUEZ JOSE ANTONIO", "dr jr", "josé"])
def test_accents_and_case_do_not_matter(archive: Context, typed: str) -> None:
    assert _accessions(archive, name=typed) == ["X-9"]


@pytest.mark.parametrize("typed", ["山田", "太郎 山田", "やまだ", "tarou yamada"])
def test_ideographic_and_phonetic_groups_are_searched_too(archive: Context, typed: str) -> None:
    assert _accessions(archive, name=typed) == ["JP-ACC"]


def test_every_word_typed_must_begin_a_word_of_the_name(archive: Context) -> None:
    # Newest first; DOE's and SMITH's latest studies have the same date and time: SMITH's came later.
    assert _accessions(archive, name="jan") == ["ACC-2024-0100", "ACC-2024-0042", "ACC-2019-0001"]
    assert _accessions(archive, name="jane smith") == []
    assert _accessions(archive, name="ane") == []
    assert _accessions(archive, name="janice") == ["ACC-2024-0100"]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"patient_id": "1001"}, ["ACC-2024-0042", "ACC-2019-0001"]),
        ({"patient_id": "pid-"}, ["ACC-2024-0100", "ACC-2024-0042", "ACC-2019-0001"]),
        ({"patient_id": "MRN-77"}, ["X-9"]),
        ({"accession": "0042"}, ["ACC-2024-0042"]),
        ({"accession": "acc-2024"}, ["ACC-2024-0100", "ACC-2024-0042"]),
        ({"accession": "2019-00"}, ["ACC-2019-0001"]),
        ({"accession": "ACC-2024-0042x"}, []),
        ({"accession": "%"}, []),
        ({"patient_id": "_"}, []),
    ],
)
def test_a_patient_id_or_accession_matches_anywhere_inside_ignoring_case(
    archive: Context, criteria: dict[str, str], expected: list[str]
) -> None:
    assert _accessions(archive, **criteria) == expected


def test_criteria_combine(archive: Context) -> None:
    assert _accessions(archive, name="jan", accession="0100") == ["ACC-2024-0100"]
    assert _accessions(archive, name="jane", date_from="20200101") == ["ACC-2024-0042"]
    assert _accessions(archive, name="jane", date_to="20191231") == ["ACC-2019-0001"]
    assert _accessions(archive, birth_date="19700101", modality="CT") == ["ACC-2024-0042", "ACC-2019-0001"]
    assert _accessions(archive, modality="US") == []


def test_one_patients_studies_are_listed_with_the_count_of_them(archive: Context) -> None:
    (first, *_) = archive.archive.search_studies(StudyQuery(name="doe"))
    assert first.patient_studies == 2
    assert _accessions(archive, patient=first.patient) == ["ACC-2024-0042", "ACC-2019-0001"]
    assert _accessions(archive, patient=first.patient + 1000) == []


# The five stored studies and DOE's older one, as each sort orders them (ascending).
ORDERS = {
    # Studies of the same date and time come in the order they were stored (row id).
    "date": ["ACC-2019-0001", "", "JP-ACC", "X-9", "ACC-2024-0042", "ACC-2024-0100"],
    # Empty first; the studies of one patient newest first.
    "name": ["", "ACC-2024-0042", "ACC-2019-0001", "X-9", "ACC-2024-0100", "JP-ACC"],
    "patient_id": ["", "JP-ACC", "X-9", "ACC-2024-0042", "ACC-2019-0001", "ACC-2024-0100"],
    "birth_date": ["", "X-9", "ACC-2024-0042", "ACC-2019-0001", "JP-ACC", "ACC-2024-0100"],
    "accession": ["", "ACC-2019-0001", "ACC-2024-0042", "ACC-2024-0100", "JP-ACC", "X-9"],
}


def _reversed_keeping_patients_newest_first(order: list[str], sort: str) -> list[str]:
    if sort in ("name", "patient_id", "birth_date"):
        doe = order.index("ACC-2024-0042")
        order = [*order[:doe], "ACC-2019-0001", "ACC-2024-0042", *order[doe + 2 :]]
    return order[::-1]


@pytest.mark.parametrize("sort", sorted(ORDERS))
def test_every_sort_orders_both_ways_and_pages_neither_overlap_nor_skip(archive: Context, sort: str) -> None:
    assert _accessions(archive, sort=sort, descending=False) == ORDERS[sort]
    expected_down = _reversed_keeping_patients_newest_first(ORDERS[sort], sort)
    assert _accessions(archive, sort=sort, descending=True) == expected_down
    paged = [a for offset in (0, 2, 4) for a in _accessions(archive, sort=sort, limit=2, offset=offset)]
    assert paged == expected_down


@pytest.mark.parametrize(
    "criteria",
    [
        {"name": "ja"},
        {"name": "doe jane"},
        {"patient_id": "pid"},
        {"accession": "acc"},
        {"date_from": "20220101", "date_to": "20241231"},
        {"modality": "CT"},
        {"name": "jan", "accession": "2024", "sort": "name"},
    ],
)
def test_few_or_many_rows_meeting_a_criterion_give_the_same_page(
    archive: Context, monkeypatch: pytest.MonkeyPatch, criteria: dict[str, str]
) -> None:
    few = _accessions(archive, **criteria)
    assert few
    # No criterion is met by few rows any more: each one filters the walk instead.
    monkeypatch.setattr(search, "FEW_PATIENTS", 0)
    monkeypatch.setattr(search, "FEW_STUDIES", 0)
    assert _accessions(archive, **criteria) == few


def test_the_words_of_a_new_patient_are_stored_once_and_go_with_the_patient(
    pacs: Context, tmp_path: Path
) -> None:
    study = Spec("DOE^JANE", "PID-W")
    for _ in range(2):
        pacs.archive.store(write(tmp_path, study))
    with pacs.database.read() as session:
        assert sorted(session.scalars(select(PatientWord.word))) == ["doe", "jane"]
    pacs.archive.delete_study(study.study_uid)
    with pacs.database.read() as session:
        assert session.scalar(select(func.count()).select_from(PatientWord)) == 0


def _frames(pacs: Context, study_uid: str) -> tuple[int, list[int]]:
    with pacs.database.read() as session:
        study = session.scalars(select(Study).where(Study.study_uid == study_uid)).one()
        series = session.scalars(
            select(Series.num_frames).where(Series.study_fk == study.id).order_by(Series.id)
        )
        return study.num_frames, list(series)


def test_frame_counts_follow_the_current_versions(pacs: Context, tmp_path: Path) -> None:
    ct = Spec(accession="F-1")
    cine = Spec(accession="F-1", study_uid=ct.study_uid, frames=12)
    pacs.archive.store(write(tmp_path / "ct", ct))
    cine_file = write(tmp_path / "cine", cine)
    pacs.archive.store(cine_file)
    assert _frames(pacs, ct.study_uid) == (13, [1, 12])
    pacs.archive.store(cine_file)  # a duplicate changes nothing
    assert _frames(pacs, ct.study_uid) == (13, [1, 12])
    sop_uid = cine_file.stem
    shorter = write(
        tmp_path / "v2",
        Spec(accession="F-1", study_uid=ct.study_uid, series_uid=cine.series_uid, frames=5),
        SOPInstanceUID=sop_uid,
    )
    pacs.archive.store(shorter)  # a new version of the cine, of 5 frames
    assert _frames(pacs, ct.study_uid) == (6, [1, 5])
    (row,) = pacs.archive.search_studies(StudyQuery(accession="F-1"))
    assert (row.series, row.frames) == (2, 6)


def _lose_index_rows(pacs: Context, sop_uid: str) -> None:
    """Delete an instance row with the counts its commit added, as a lost (unflushed) commit would."""
    with pacs.database.write() as session:
        series_fk, frames = session.execute(
            select(Instance.series_fk, Instance.frames).where(Instance.sop_uid == sop_uid)
        ).one()
        session.execute(delete(Instance).where(Instance.sop_uid == sop_uid))
        lost = {"num_instances": Series.num_instances - 1, "num_frames": Series.num_frames - frames}
        session.execute(update(Series).where(Series.id == series_fk).values(**lost))
        study_fk = select(Series.study_fk).where(Series.id == series_fk).scalar_subquery()
        lost_study = {"num_instances": Study.num_instances - 1, "num_frames": Study.num_frames - frames}
        session.execute(update(Study).where(Study.id == study_fk).values(**lost_study))


def test_the_reindex_sweep_restores_the_frame_counts(pacs: Context, tmp_path: Path) -> None:
    ct = Spec(accession="R-1")
    cine_file = write(tmp_path / "cine", Spec(accession="R-1", study_uid=ct.study_uid, frames=7))
    pacs.archive.store(write(tmp_path / "ct", ct))
    pacs.archive.store(cine_file)
    _lose_index_rows(pacs, cine_file.stem)
    assert _frames(pacs, ct.study_uid) == (1, [1, 0])
    report = reindex.sweep(pacs.archive, remove=False, alone=True)
    assert [result.sop_uid for result in report.reindexed] == [cine_file.stem]
    assert _frames(pacs, ct.study_uid) == (8, [1, 7])
