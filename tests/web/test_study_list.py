"""What the study list shows and how it sorts: names as people read them, ISO dates and times for the
browser to format, sex, age, frame counts, a patient's other studies, sort links; on both backends.

The formatting functions themselves (:mod:`webviewer.people`) are checked first, without a server.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from pacs.core.audit import EventID
from tests.storage.study_files import Spec, write
from tests.web.web_helpers import Browser, Web, details, listed_patient_ids, study_rows
from webviewer import people

DOE = Spec("DOE^JANE", "PID-1", "19700101", "F", "20240220", "143015.25", "ACC-2024-0042")
PRIOR = Spec("DOE^JANE", "PID-1", "19700101", "F", "20190601", "0800", "ACC-2019-0007")
BABY = Spec("ROE^BABY", "PID-2", "20240101", "M", "20240320", "", "ACC-B", age="002M")
NAMELESS = Spec("", "PID-3", "", "", "20230505", "", "ACC-N")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("DOE^JANE", "DOE, Jane"),
        ("DOE^JANE^MARY^DR^JR", "DOE, Dr Jane Mary, Jr"),
        ("van der Berg^Anna", "van der Berg, Anna"),
        ("O'NEIL^JEAN-PIERRE", "O'NEIL, Jean-Pierre"),
        ("DOE", "DOE"),
        ("^JANE", "Jane"),
        ("DOE^^^^PHD", "DOE, Phd"),
        ("", ""),
        ("^^^^", ""),
    ],
)
def test_an_alphabetic_name_reads_family_comma_given_names(value: str, shown: str) -> None:
    assert people.person_name(value) == people.ShownName(shown)


def test_ideographic_and_phonetic_groups_are_shown_beside_the_alphabetic_name() -> None:
    name = people.person_name("Yamada^Tarou=山田^太郎=やまだ^たろう")
    assert name == people.ShownName("Yamada, Tarou", ("山田 太郎", "やまだ たろう"))
    assert people.person_name("=山田^太郎") == people.ShownName("山田 太郎")
    assert people.person_name("==やまだ^たろう") == people.ShownName("やまだ たろう")


@pytest.mark.parametrize(
    ("patient_age", "birth", "study", "age"),
    [
        ("", "19700101", "20240220", "54 y"),
        ("", "19700221", "20240220", "53 y"),
        ("", "20220301", "20240220", "23 mo"),
        ("", "20240101", "20240220", "1 mo"),
        ("", "20240210", "20240220", "10 d"),
        ("052Y", "19700101", "20240220", "52 y"),
        ("003M", "", "", "3 mo"),
        ("010W", "", "", "10 wk"),
        ("005D", "", "", "5 d"),
        ("", "", "20240220", ""),
        ("", "19700101", "", ""),
        ("", "20250101", "20240101", ""),
        ("", "19701301", "20240101", ""),
        ("52", "", "", ""),
    ],
)
def test_the_age_is_the_patients_age_or_worked_out_at_the_study_date(
    patient_age: str, birth: str, study: str, age: str
) -> None:
    assert people.age(patient_age, birth, study) == age


@pytest.mark.parametrize(
    ("dicom", "iso"),
    [
        ("143015.25", "14:30:15"),
        ("1430", "14:30:00"),
        ("14", "14:00:00"),
        ("14:30:15", "14:30:15"),
        ("2500", ""),
        ("x", ""),
    ],
)
def test_dicom_times_become_iso_times(dicom: str, iso: str) -> None:
    assert people.iso_time(dicom) == iso


def test_dicom_dates_become_iso_dates_or_nothing() -> None:
    assert [people.iso_date(v) for v in ("20240220", "20240230", "2024", "")] == ["2024-02-20", "", "", ""]


# -- the page ----------------------------------------------------------------------------------------


@pytest.fixture
def stored(web: Web, tmp_path: Path) -> Web:
    for spec in (DOE, PRIOR, BABY, NAMELESS):
        web.pacs.archive.store(write(tmp_path / "in", spec))
    cine = Spec(DOE.name, DOE.patient_id, study_uid=DOE.study_uid, frames=40, accession=DOE.accession)
    web.pacs.archive.store(write(tmp_path / "cine", cine))
    return web


def _texts(page: str) -> list[list[str]]:
    """The text of every cell of every row of the study list (tags dropped, spaces collapsed)."""
    return [[" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in row] for row in study_rows(page)]


def _row(page: str, study_uid: str) -> str:
    match = re.search(rf'<tr data-study="{re.escape(study_uid)}">(.*?)</tr>', page, re.S)
    assert match is not None, f"no row of {study_uid}"
    return match.group(1)


def test_a_row_shows_the_name_sex_age_and_iso_dates_and_times(stored: Web, doc: Browser) -> None:
    page = doc.get("/").text
    cells = {row[8]: row for row in _texts(page)}
    assert cells["ACC-2024-0042"][:4] == ["DOE, Jane", "PID-1", "F", "54 y"]
    assert cells["ACC-2019-0007"][:4] == ["DOE, Jane", "PID-1", "F", "49 y"]
    row = _row(page, DOE.study_uid)
    assert '<time datetime="1970-01-01" data-show="date">1970-01-01</time>' in row
    assert '<time datetime="2024-02-20T14:30:15" data-show="datetime">2024-02-20 14:30</time>' in row
    assert '<abbr title="female">F</abbr>' in row
    assert cells["ACC-B"][:4] == ["ROE, Baby", "PID-2", "M", "2 mo"]
    assert '<time datetime="2024-03-20" data-show="date">' in _row(page, BABY.study_uid)


def test_images_count_frames_and_series_count_series(stored: Web, doc: Browser) -> None:
    cells = {row[8]: row for row in _texts(doc.get("/").text)}
    assert cells["ACC-2024-0042"][9:11] == ["2", "41"]
    assert cells["ACC-2019-0007"][9:11] == ["1", "1"]


def test_a_study_without_a_patient_name_has_a_link_that_opens_it(stored: Web, doc: Browser) -> None:
    row = _row(doc.get("/").text, NAMELESS.study_uid)
    link = re.search(r'<td class="patient"><a href="([^"]+)">(.*?)</a>', row, re.S)
    assert link is not None
    assert re.sub(r"<[^>]+>", "", link.group(2)) == "(no name)"
    assert link.group(1) == f"/studies/{NAMELESS.study_uid}"
    assert doc.get(link.group(1)).status_code == 200


def test_the_patients_other_studies_are_one_link_away(stored: Web, doc: Browser) -> None:
    page = doc.get("/").text
    link = re.search(r'<a href="([^"]+)" class="patient-studies">2 studies</a>', _row(page, DOE.study_uid))
    assert link is not None
    assert "patient-studies" not in _row(page, BABY.study_uid)
    mine = doc.get(html.unescape(link.group(1))).text
    assert listed_patient_ids(mine) == ["PID-1", "PID-1"]
    assert "Studies of <strong>DOE, Jane</strong> (PID-1)" in mine


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=jane", ["ACC-2024-0042", "ACC-2019-0007"]),
        ("name=doe+jane", ["ACC-2024-0042", "ACC-2019-0007"]),
        ("name=Jane+Doe", ["ACC-2024-0042", "ACC-2019-0007"]),
        ("patient_id=id-2", ["ACC-B"]),
        ("accession=2024-00", ["ACC-2024-0042"]),
        ("accession=acc-b", ["ACC-B"]),
    ],
)
def test_the_search_form_finds_by_any_name_word_and_part_of_an_id(
    stored: Web, doc: Browser, query: str, expected: list[str]
) -> None:
    assert [row[8] for row in _texts(doc.get(f"/?{query}").text)] == expected


def _sort_link(page: str, column: str) -> tuple[str, str]:
    """The href of a column's sort link and the aria-sort of its header."""
    match = re.search(
        rf'<th scope="col" aria-sort="(\w+)"><a href="([^"]+)" class="sort" data-sort="{column}">', page
    )
    assert match is not None, f"no sort link for {column}"
    return html.unescape(match.group(2)), match.group(1)


def test_headers_sort_by_their_column_and_again_the_other_way_keeping_the_search(
    stored: Web, doc: Browser
) -> None:
    page = doc.get("/?modality=CT").text
    assert _sort_link(page, "date")[1] == "descending"
    by_name, aria = _sort_link(page, "name")
    assert aria == "none" and "modality=CT" in by_name and "dir=asc" in by_name
    ascending = doc.get(by_name).text
    # Empty name first; the studies of one patient newest first.
    assert listed_patient_ids(ascending) == ["PID-3", "PID-1", "PID-1", "PID-2"]
    again, aria = _sort_link(ascending, "name")
    assert aria == "ascending" and "dir=desc" in again
    assert listed_patient_ids(doc.get(again).text) == ["PID-2", "PID-1", "PID-1", "PID-3"]
    oldest, _ = _sort_link(page, "date")
    assert [row[8] for row in _texts(doc.get(oldest).text)] == [
        "ACC-2019-0007",
        "ACC-N",
        "ACC-2024-0042",
        "ACC-B",
    ]


def test_an_unknown_sort_is_newest_first(stored: Web, doc: Browser) -> None:
    expected = ["ACC-B", "ACC-2024-0042", "ACC-N", "ACC-2019-0007"]
    assert [row[8] for row in _texts(doc.get("/?sort=size&dir=sideways").text)] == expected


def test_the_patient_filter_and_the_sort_are_audited_as_the_search(
    stored: Web, doc: Browser, web: Web
) -> None:
    doc.get("/?patient=1&name=doe&sort=name&dir=asc")
    (query,) = web.audit(str(EventID.QUERY), user="doc")
    assert details(query)["keys"] == {"name": "doe", "patient": 1}
