"""C-FIND attribute matching (PS3.4 C.2.2.2, ``storage.matching``) on both index backends.

Every test stores the same hand-designed archive (:mod:`tests.storage.matching_archive`, whose
table the expectations are written from by hand) and states, for one matching rule, the exact set
of entities a query must return.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pynetdicom.dsutils import encode

from pacs.core.context import Context
from storage.archive import Archive
from storage.matching import QueryError
from tests.storage.matching_archive import (
    ALL_SERIES,
    ALL_SOPS,
    ALL_STUDIES,
    ROOT,
    S1,
    S1_CT,
    S1_MR,
    S2,
    S2_US,
    S3,
    S3_MR,
    S4,
    S4_CT,
    S5,
    S5_MR,
    S6,
    S6_CT,
    SERIES_SPECS,
    _write_series,
    find,
    matched,
    multi,
    query,
    sop,
)


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The DICOM files of the fixture archive, written once per module."""
    root = tmp_path_factory.mktemp("matching")
    files: list[Path] = []
    for spec in SERIES_SPECS:
        files += _write_series(spec, root / spec.uid)
    assert len(files) == 10
    return files


@pytest.fixture
def archive(pacs: Context, fixture_files: list[Path]) -> Archive:
    """The open archive of `pacs` (SQLCipher or PostgreSQL) holding the fixture archive."""
    for path in fixture_files:
        pacs.archive.store(path)
    return pacs.archive


def test_universal_matching_returns_every_entity_with_the_key_filled_in(archive: Archive) -> None:
    responses = find(archive, "STUDY", StudyDescription="", PatientName="", AccessionNumber="")
    got = {r.StudyInstanceUID: (r.StudyDescription, str(r.PatientName), r.AccessionNumber) for r in responses}
    assert got == {
        S1: ("CT CHEST", "DOE^JANE", "ACC-1"),
        S2: ("US ABDOMEN", "DOE^JANE", "ACC-2"),
        S3: ("MR Brain", "DOE^JOHN", "acc-3"),
        S4: ("100%_[A]", "SMITH^ANNA", "ACC-4"),
        S5: ("1000 VIEWS", "SMITH^ANNA", "ACC-5"),
        S6: ("PELVIS AREA", "ADOE^MARK", "ACC-6"),
    }
    # A lone "*" also matches every entity, including those whose value is empty.
    assert matched(archive, "STUDY", ReferringPhysicianName="*") == ALL_STUDIES
    assert matched(archive, "STUDY", StudyDescription="*") == ALL_STUDIES


def test_single_value_matching_is_exact_and_case_sensitive_for_text(archive: Archive) -> None:
    assert matched(archive, "STUDY", StudyDescription="MR Brain") == {S3}
    assert matched(archive, "STUDY", StudyDescription="MR BRAIN") == set()
    assert matched(archive, "STUDY", StudyDescription="mr brain") == set()
    assert matched(archive, "STUDY", StudyDescription="MR") == set()
    assert matched(archive, "STUDY", AccessionNumber="acc-3") == {S3}
    assert matched(archive, "STUDY", AccessionNumber="ACC-3") == set()
    assert matched(archive, "STUDY", AccessionNumber="ACC-1") == {S1}
    assert matched(archive, "STUDY", PatientID="PID-001") == {S1, S2}
    assert matched(archive, "STUDY", PatientID="pid-001") == set()
    assert matched(archive, "SERIES", Modality="MR") == {S1_MR, S3_MR, S5_MR}
    assert matched(archive, "SERIES", Modality="mr") == set()


def test_person_name_matching_ignores_case_and_trailing_empty_components(archive: Archive) -> None:
    assert matched(archive, "STUDY", PatientName="DOE^JANE") == {S1, S2}
    assert matched(archive, "STUDY", PatientName="doe^jane") == {S1, S2}
    assert matched(archive, "STUDY", PatientName="Doe^Jane") == {S1, S2}
    assert matched(archive, "STUDY", PatientName="DOE^JANE^^") == {S1, S2}
    assert matched(archive, "STUDY", PatientName="doe^jane^^^") == {S1, S2}
    assert matched(archive, "STUDY", PatientName="DOE") == set()
    assert matched(archive, "STUDY", PatientName="DOE^JAN") == set()
    # S2 stored its referring physician in lower case with trailing empty components.
    assert matched(archive, "STUDY", ReferringPhysicianName="HOUSE^GREGORY") == {S1, S2}
    assert matched(archive, "STUDY", ReferringPhysicianName="house^gregory^") == {S1, S2}
    assert matched(archive, "STUDY", ReferringPhysicianName="WILSON^JAMES^^") == {S3}


def test_person_name_wildcards_star_and_question_mark_ignore_case(archive: Archive) -> None:
    assert matched(archive, "STUDY", PatientName="DO*") == {S1, S2, S3}
    assert matched(archive, "STUDY", PatientName="do*") == {S1, S2, S3}
    assert matched(archive, "STUDY", PatientName="D*^JANE") == {S1, S2}
    assert matched(archive, "STUDY", PatientName="*^MARK") == {S6}
    assert matched(archive, "STUDY", PatientName="*doe*") == {S1, S2, S3, S6}
    assert matched(archive, "STUDY", PatientName="DOE^J?NE") == {S1, S2}
    assert matched(archive, "STUDY", PatientName="doe^jo?n") == {S3}
    assert matched(archive, "STUDY", PatientName="?DOE^*") == {S6}
    assert matched(archive, "STUDY", PatientName="DOE^J?") == set()
    assert matched(archive, "STUDY", ReferringPhysicianName="h*") == {S1, S2}
    assert matched(archive, "STUDY", ReferringPhysicianName="?*") == {S1, S2, S3, S4}


def test_text_wildcards_star_and_question_mark_stay_case_sensitive(archive: Archive) -> None:
    assert matched(archive, "STUDY", AccessionNumber="ACC-*") == {S1, S2, S4, S5, S6}
    assert matched(archive, "STUDY", AccessionNumber="acc-*") == {S3}
    assert matched(archive, "STUDY", AccessionNumber="ACC-?") == {S1, S2, S4, S5, S6}
    assert matched(archive, "STUDY", AccessionNumber="*-6") == {S6}
    assert matched(archive, "STUDY", AccessionNumber="A*-1") == {S1}
    assert matched(archive, "STUDY", AccessionNumber="?CC-1") == {S1}
    assert matched(archive, "STUDY", AccessionNumber="ACC-??") == set()
    assert matched(archive, "STUDY", StudyDescription="MR B*") == {S3}
    assert matched(archive, "STUDY", StudyDescription="mr b*") == set()
    assert matched(archive, "STUDY", StudyDescription="*Brain") == {S3}
    assert matched(archive, "STUDY", StudyDescription="*BRAIN") == set()
    assert matched(archive, "STUDY", StudyDescription="*A*") == {S2, S4, S6}
    assert matched(archive, "SERIES", BodyPartExamined="?HEST") == {S1_CT, S4_CT}


def test_sql_wildcard_characters_are_literal(archive: Archive) -> None:
    assert matched(archive, "STUDY", StudyDescription="100%_[A]") == {S4}
    assert matched(archive, "STUDY", StudyDescription="100*") == {S4, S5}
    assert matched(archive, "STUDY", StudyDescription="1%") == set()
    assert matched(archive, "STUDY", StudyDescription="%") == set()
    assert matched(archive, "STUDY", StudyDescription="100%*") == {S4}
    assert matched(archive, "STUDY", StudyDescription="100_*") == set()
    assert matched(archive, "STUDY", StudyDescription="1000 VIEW_") == set()
    assert matched(archive, "STUDY", StudyDescription="100?_[A]") == {S4}
    # As a character class, [A] would also match "PELVIS AREA".
    assert matched(archive, "STUDY", StudyDescription="*[A]") == {S4}
    assert matched(archive, "STUDY", StudyDescription="*[A-Z]*") == set()
    assert matched(archive, "STUDY", StudyDescription="*_[A]") == {S4}
    assert matched(archive, "STUDY", PatientName="%") == set()
    assert matched(archive, "STUDY", PatientName="D_E*") == set()


def test_date_range_and_single_date_matching(archive: Archive) -> None:
    assert matched(archive, "STUDY", StudyDate="20240101-20240301") == {S1, S3, S6}
    assert matched(archive, "STUDY", StudyDate="20230610-20240115") == {S1, S2}
    assert matched(archive, "STUDY", StudyDate="20240101-") == {S1, S3, S6}
    assert matched(archive, "STUDY", StudyDate="-20230610") == {S2, S4}
    assert matched(archive, "STUDY", StudyDate="20240301") == {S3, S6}
    assert matched(archive, "STUDY", StudyDate="20240302-") == set()
    # S5 has no study date: it never matches a range, however wide.
    assert matched(archive, "STUDY", StudyDate="19000101-") == {S1, S2, S3, S4, S6}
    assert matched(archive, "STUDY", StudyDate="-29991231") == {S1, S2, S3, S4, S6}
    assert matched(archive, "PATIENT", PatientBirthDate="-19700101") == {"PID-001", "PID-002", "PID-004"}


def test_time_range_matches_at_the_precision_given(archive: Archive) -> None:
    # 11:00:59 is inside "up to 11:00"; 11:01:00 is not.
    assert matched(archive, "STUDY", StudyTime="-1100") == {S1, S2, S6}
    assert matched(archive, "STUDY", StudyTime="1000-") == {S2, S3, S4}
    assert matched(archive, "STUDY", StudyTime="0930-1100") == {S1, S2}
    assert matched(archive, "STUDY", StudyTime="1101-") == {S3, S4}
    assert matched(archive, "STUDY", StudyTime="11:00-11:00") == {S2}
    assert matched(archive, "STUDY", StudyTime="110059-110059") == {S2}
    assert matched(archive, "STUDY", StudyTime="-08") == {S6}
    assert matched(archive, "STUDY", StudyTime="-0759") == set()
    # S5 has no study time: it never matches a range.
    assert matched(archive, "STUDY", StudyTime="-235959") == {S1, S2, S3, S4, S6}
    assert matched(archive, "STUDY", StudyTime="093000") == {S1}
    assert matched(archive, "STUDY", StudyTime="09:30:00") == {S1}


def test_uid_list_matching(archive: Archive) -> None:
    assert matched(archive, "STUDY", StudyInstanceUID=f"{S1}\\{S3}") == {S1, S3}
    assert matched(archive, "STUDY", StudyInstanceUID=[S2, S4]) == {S2, S4}
    assert matched(archive, "STUDY", StudyInstanceUID=f"{S1}\\{ROOT}.999") == {S1}
    assert matched(archive, "STUDY", StudyInstanceUID=S6) == {S6}
    assert matched(archive, "SERIES", SeriesInstanceUID=f"{S1_MR}\\{S6_CT}") == {S1_MR, S6_CT}
    assert matched(archive, "IMAGE", SOPInstanceUID=f"{sop(S3_MR, 2)}\\{sop(S2_US, 1)}") == {
        sop(S3_MR, 2),
        sop(S2_US, 1),
    }


def test_invalid_uid_matches_nothing_without_error(archive: Archive) -> None:
    assert matched(archive, "STUDY", StudyInstanceUID="../etc") == set()
    assert matched(archive, "STUDY", StudyInstanceUID="1.2.3' OR '1'='1") == set()
    assert matched(archive, "SERIES", SeriesInstanceUID="*") == set()
    assert matched(archive, "IMAGE", SOPInstanceUID=f"{S1}.1.x") == set()


def test_integer_key_single_value_at_series_level(archive: Archive) -> None:
    responses = find(archive, "SERIES", SeriesNumber="2")
    assert {r.SeriesInstanceUID: int(r.SeriesNumber) for r in responses} == {S1_CT: 2, S6_CT: 2}
    assert matched(archive, "SERIES", SeriesNumber=3) == {S1_MR, S3_MR}
    assert matched(archive, "SERIES", SeriesNumber="7") == {S5_MR}
    assert matched(archive, "SERIES", SeriesNumber="4") == set()
    assert matched(archive, "IMAGE", InstanceNumber="2") == {
        sop(S1_CT, 2),
        sop(S1_MR, 2),
        sop(S3_MR, 2),
    }


def test_modalities_in_study_matches_any_listed_modality(archive: Archive) -> None:
    assert matched(archive, "STUDY", ModalitiesInStudy="MR") == {S1, S3, S5}
    assert matched(archive, "STUDY", ModalitiesInStudy="CT") == {S1, S4, S6}
    assert matched(archive, "STUDY", ModalitiesInStudy="US\\MR") == {S1, S2, S3, S5}
    assert matched(archive, "STUDY", ModalitiesInStudy=["CT", "US"]) == {S1, S2, S4, S6}
    assert matched(archive, "STUDY", ModalitiesInStudy="XA") == set()
    responses = find(archive, "STUDY", StudyInstanceUID=f"{S1}\\{S2}", ModalitiesInStudy="")
    assert {r.StudyInstanceUID: multi(r["ModalitiesInStudy"].value) for r in responses} == {
        S1: ["CT", "MR"],
        S2: ["US"],
    }


def test_patient_level_returns_one_response_per_patient(archive: Archive) -> None:
    responses = find(archive, "PATIENT", PatientName="")
    # One per patient (P1 and P3 have two studies each), ordered by name.
    assert [(r.PatientID, str(r.PatientName)) for r in responses] == [
        ("PID-004", "ADOE^MARK"),
        ("PID-001", "DOE^JANE"),
        ("PID-002", "DOE^JOHN"),
        ("PID-003", "SMITH^ANNA"),
    ]
    assert all(r.QueryRetrieveLevel == "PATIENT" for r in responses)
    assert matched(archive, "PATIENT", PatientName="DOE^JANE") == {"PID-001"}
    assert matched(archive, "PATIENT", PatientName="*DOE*") == {"PID-001", "PID-002", "PID-004"}
    assert matched(archive, "PATIENT", PatientBirthDate="19700101") == {"PID-001", "PID-004"}


def test_study_series_and_image_levels_return_one_response_per_entity(archive: Archive) -> None:
    responses = find(archive, "STUDY", PatientID="")
    assert sorted((r.PatientID, r.StudyInstanceUID) for r in responses) == [
        ("PID-001", S1),
        ("PID-001", S2),
        ("PID-002", S3),
        ("PID-003", S4),
        ("PID-003", S5),
        ("PID-004", S6),
    ]
    assert all(r.QueryRetrieveLevel == "STUDY" for r in responses)

    assert matched(archive, "SERIES") == ALL_SERIES
    responses = find(archive, "SERIES", StudyInstanceUID=S1, Modality="", SeriesNumber="")
    # Ordered by series number.
    assert [(r.SeriesInstanceUID, r.Modality, int(r.SeriesNumber)) for r in responses] == [
        (S1_CT, "CT", 2),
        (S1_MR, "MR", 3),
    ]
    assert all(r.QueryRetrieveLevel == "SERIES" for r in responses)

    assert matched(archive, "IMAGE") == ALL_SOPS
    responses = find(archive, "IMAGE", SeriesInstanceUID=S1_MR, InstanceNumber="")
    # Ordered by instance number.
    assert [(r.SOPInstanceUID, int(r.InstanceNumber)) for r in responses] == [
        (sop(S1_MR, 1), 1),
        (sop(S1_MR, 2), 2),
    ]
    responses = find(archive, "IMAGE", SeriesInstanceUID=S2_US, NumberOfFrames="")
    assert [(r.SOPInstanceUID, int(r.NumberOfFrames)) for r in responses] == [(sop(S2_US, 1), 2)]
    assert all(r.QueryRetrieveLevel == "IMAGE" for r in responses)


def test_keys_of_higher_levels_filter_lower_level_queries(archive: Archive) -> None:
    assert matched(archive, "STUDY", PatientID="PID-003") == {S4, S5}
    assert matched(archive, "SERIES", PatientName="smith^anna") == {S4_CT, S5_MR}
    assert matched(archive, "SERIES", StudyDate="20240101-", Modality="CT") == {S1_CT, S6_CT}
    assert matched(archive, "IMAGE", PatientID="PID-001") == {
        sop(S1_CT, 1),
        sop(S1_CT, 2),
        sop(S1_MR, 1),
        sop(S1_MR, 2),
        sop(S2_US, 1),
    }
    assert matched(archive, "IMAGE", PatientID="PID-001", Modality="MR") == {sop(S1_MR, 1), sop(S1_MR, 2)}
    assert matched(archive, "IMAGE", StudyDescription="MR Brain", InstanceNumber="2") == {sop(S3_MR, 2)}
    assert matched(archive, "IMAGE", PatientID="PID-002", StudyInstanceUID=S1) == set()
    responses = find(archive, "IMAGE", SeriesInstanceUID=S6_CT, PatientName="", StudyDate="")
    assert [(str(r.PatientName), r.StudyDate, r.SeriesInstanceUID) for r in responses] == [
        ("ADOE^MARK", "20240301", S6_CT)
    ]


def test_related_counts_are_returned(archive: Archive) -> None:
    responses = find(archive, "STUDY", NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="")
    assert {
        r.StudyInstanceUID: (int(r.NumberOfStudyRelatedSeries), int(r.NumberOfStudyRelatedInstances))
        for r in responses
    } == {S1: (2, 4), S2: (1, 1), S3: (1, 2), S4: (1, 1), S5: (1, 1), S6: (1, 1)}
    responses = find(archive, "SERIES", NumberOfSeriesRelatedInstances="")
    assert {r.SeriesInstanceUID: int(r.NumberOfSeriesRelatedInstances) for r in responses} == {
        S1_CT: 2,
        S1_MR: 2,
        S2_US: 1,
        S3_MR: 2,
        S4_CT: 1,
        S5_MR: 1,
        S6_CT: 1,
    }
    responses = find(archive, "PATIENT", NumberOfPatientRelatedStudies="")
    assert {r.PatientID: int(r.NumberOfPatientRelatedStudies) for r in responses} == {
        "PID-001": 2,
        "PID-002": 1,
        "PID-003": 2,
        "PID-004": 1,
    }


def test_unknown_key_comes_back_present_and_empty(archive: Archive) -> None:
    responses = find(archive, "STUDY", StudyInstanceUID=S1, PatientComments="", StudyDescription="")
    assert len(responses) == 1
    response = responses[0]
    assert "PatientComments" in response
    assert response["PatientComments"].value in (None, "")
    assert response.StudyDescription == "CT CHEST"
    # A value given for a key the archive does not know does not filter anything either.
    assert matched(archive, "STUDY", PatientComments="anything") == ALL_STUDIES


def test_limit_and_offset_page_studies_newest_first(archive: Archive) -> None:
    def page(limit: int, offset: int) -> list[str]:
        return [
            r.StudyInstanceUID
            for r in archive.find("STUDY", query(StudyInstanceUID=""), limit=limit, offset=offset)
        ]

    # Newest date first, then latest time; S5 (no date) comes last.
    assert page(2, 0) == [S3, S6]
    assert page(2, 2) == [S1, S2]
    assert page(2, 4) == [S4, S5]
    assert page(10, 6) == []
    assert page(3, 1) == [S6, S1, S2]


def test_unknown_level_raises_query_error(pacs: Context) -> None:
    for level in ("FRAME", "study", "", "PATIENT/STUDY"):
        with pytest.raises(QueryError):
            pacs.archive.find(level, query(StudyInstanceUID=""))


# --- Rules the code does not (yet) follow --------------------------------------------


def test_modalities_in_study_filters_series_level_queries_by_study(archive: Archive) -> None:
    # Relational matching: at SERIES level a study key selects the series of matching
    # studies. S1 has an MR series, so both its series match ModalitiesInStudy=MR.
    assert matched(archive, "SERIES", StudyInstanceUID=S1, ModalitiesInStudy="MR") == {S1_CT, S1_MR}


def test_patient_related_study_count_below_patient_level(archive: Archive) -> None:
    responses = find(archive, "STUDY", NumberOfPatientRelatedStudies="")
    assert {r.StudyInstanceUID: int(r.NumberOfPatientRelatedStudies) for r in responses} == {
        S1: 2,
        S2: 2,
        S3: 1,
        S4: 2,
        S5: 2,
        S6: 1,
    }


def test_person_name_wildcard_ignores_trailing_empty_components(archive: Archive) -> None:
    assert matched(archive, "STUDY", PatientName="DOE^J*^^") == {S1, S2, S3}


def test_modalities_in_study_accepts_wildcards(archive: Archive) -> None:
    assert matched(archive, "STUDY", ModalitiesInStudy="M?") == {S1, S3, S5}
    assert matched(archive, "STUDY", ModalitiesInStudy="*") == ALL_STUDIES


def test_binary_integer_keys_come_back_as_encodable_numbers(archive: Archive) -> None:
    responses = find(archive, "IMAGE", SOPInstanceUID=sop(S2_US, 1), Rows="", Columns="")
    assert [(r.Rows, r.Columns) for r in responses] == [(16, 16)]
    assert all(isinstance(r.Rows, int) and isinstance(r.Columns, int) for r in responses)
    assert encode(responses[0], True, True) is not None
