"""C-FIND attribute matching (PS3.4 C.2.2.2, ``storage.matching``) on both index backends.

Every test stores the same hand-designed archive and states, for one matching rule, the
exact set of entities a query must return. The expectations below are written out by
hand from this table, never computed by the code under test.

Patients (PatientID, PatientName, PatientBirthDate)::

    P1  PID-001  DOE^JANE    19700101
    P2  PID-002  DOE^JOHN    19650315
    P3  PID-003  SMITH^ANNA  19800101
    P4  PID-004  ADOE^MARK   19700101

Studies (patient, StudyDate, StudyTime, AccessionNumber, StudyDescription, ReferringPhysicianName)::

    S1  P1  20240115  093000  ACC-1  CT CHEST     HOUSE^GREGORY
    S2  P1  20230610  110059  ACC-2  US ABDOMEN   house^gregory^^
    S3  P2  20240301  110100  acc-3  MR Brain     WILSON^JAMES
    S4  P3  20220101  235959  ACC-4  100%_[A]     CUDDY^LISA
    S5  P3  (empty)   (empty) ACC-5  1000 VIEWS   (empty)
    S6  P4  20240301  080000  ACC-6  PELVIS AREA  (empty)

Series (study, Modality, SeriesNumber, instances)::

    S1-CT  S1  CT  2  2        S1-MR  S1  MR  3  2
    S2-US  S2  US  1  1        S3-MR  S3  MR  3  2
    S4-CT  S4  CT  5  1        S5-MR  S5  MR  7  1
    S6-CT  S6  CT  2  1

Instance n of a series has SOP Instance UID ``<series uid>.<n>`` and InstanceNumber n.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom.dsutils import encode

from pacs.core.context import Context
from storage.archive import Archive
from storage.matching import QueryError
from tests.data.make_series import make_ct_series, make_mr_series, make_us_cine

ROOT = "1.2.826.0.1.3680043.9.7133.42"

S1, S2, S3, S4, S5, S6 = (f"{ROOT}.{n}" for n in range(1, 7))
ALL_STUDIES = {S1, S2, S3, S4, S5, S6}

S1_CT, S1_MR, S2_US, S3_MR, S4_CT, S5_MR, S6_CT = (
    f"{S1}.1",
    f"{S1}.2",
    f"{S2}.1",
    f"{S3}.1",
    f"{S4}.1",
    f"{S5}.1",
    f"{S6}.1",
)
ALL_SERIES = {S1_CT, S1_MR, S2_US, S3_MR, S4_CT, S5_MR, S6_CT}


def sop(series_uid: str, number: int) -> str:
    """The SOP Instance UID of instance `number` of a fixture series."""
    return f"{series_uid}.{number}"


ALL_SOPS = {
    sop(S1_CT, 1),
    sop(S1_CT, 2),
    sop(S1_MR, 1),
    sop(S1_MR, 2),
    sop(S2_US, 1),
    sop(S3_MR, 1),
    sop(S3_MR, 2),
    sop(S4_CT, 1),
    sop(S5_MR, 1),
    sop(S6_CT, 1),
}


@dataclass(frozen=True)
class PatientSpec:
    name: str
    patient_id: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class StudySpec:
    uid: str
    patient: PatientSpec
    date: str
    time: str
    accession: str
    description: str
    referring: str


@dataclass(frozen=True)
class SeriesSpec:
    uid: str
    study: StudySpec
    maker: Callable[..., list[Path]]
    count: int
    number: int
    body_part: str


P1 = PatientSpec("DOE^JANE", "PID-001", "19700101", "F")
P2 = PatientSpec("DOE^JOHN", "PID-002", "19650315", "M")
P3 = PatientSpec("SMITH^ANNA", "PID-003", "19800101", "F")
P4 = PatientSpec("ADOE^MARK", "PID-004", "19700101", "M")

STUDY_SPECS = {
    S1: StudySpec(S1, P1, "20240115", "093000", "ACC-1", "CT CHEST", "HOUSE^GREGORY"),
    S2: StudySpec(S2, P1, "20230610", "110059", "ACC-2", "US ABDOMEN", "house^gregory^^"),
    S3: StudySpec(S3, P2, "20240301", "110100", "acc-3", "MR Brain", "WILSON^JAMES"),
    S4: StudySpec(S4, P3, "20220101", "235959", "ACC-4", "100%_[A]", "CUDDY^LISA"),
    S5: StudySpec(S5, P3, "", "", "ACC-5", "1000 VIEWS", ""),
    S6: StudySpec(S6, P4, "20240301", "080000", "ACC-6", "PELVIS AREA", ""),
}

SERIES_SPECS = [
    SeriesSpec(S1_CT, STUDY_SPECS[S1], make_ct_series, 2, 2, "CHEST"),
    SeriesSpec(S1_MR, STUDY_SPECS[S1], make_mr_series, 2, 3, "HEAD"),
    SeriesSpec(S2_US, STUDY_SPECS[S2], make_us_cine, 1, 1, "ABDOMEN"),
    SeriesSpec(S3_MR, STUDY_SPECS[S3], make_mr_series, 2, 3, "HEAD"),
    SeriesSpec(S4_CT, STUDY_SPECS[S4], make_ct_series, 1, 5, "CHEST"),
    SeriesSpec(S5_MR, STUDY_SPECS[S5], make_mr_series, 1, 7, "HEAD"),
    SeriesSpec(S6_CT, STUDY_SPECS[S6], make_ct_series, 1, 2, "PELVIS"),
]


def _write_series(spec: SeriesSpec, outdir: Path) -> list[Path]:
    study, patient = spec.study, spec.study.patient
    size: dict[str, Any] = {"rows": 16, "columns": 16}
    size["frames" if spec.maker is make_us_cine else "slices"] = (
        2 if spec.maker is make_us_cine else spec.count
    )
    paths = spec.maker(
        outdir,
        **size,
        patient_name=patient.name,
        patient_id=patient.patient_id,
        study_uid=study.uid,
        series_uid=spec.uid,
        study_date=study.date or "20000101",
        accession=study.accession,
    )
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyDate = study.date
        ds.StudyTime = study.time
        ds.StudyDescription = study.description
        ds.ReferringPhysicianName = study.referring
        ds.PatientBirthDate = patient.birth_date
        ds.PatientSex = patient.sex
        ds.SeriesNumber = spec.number
        ds.BodyPartExamined = spec.body_part
        ds.SOPInstanceUID = sop(spec.uid, int(ds.InstanceNumber))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return paths


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


def query(**keys: Any) -> Dataset:
    """A C-FIND identifier with the given keys (values are not validated, like a peer's)."""
    identifier = Dataset()
    with pydicom.config.disable_value_validation():
        for keyword, value in keys.items():
            setattr(identifier, keyword, value)
    return identifier


UNIQUE_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


def find(archive: Archive, level: str, **keys: Any) -> list[Dataset]:
    """Run a query that also asks for the unique key of `level` (universally unless given)."""
    keys.setdefault(UNIQUE_KEY[level], "")
    return archive.find(level, query(**keys))


def matched(archive: Archive, level: str, **keys: Any) -> set[str]:
    """The unique keys of the entities at `level` that match `keys`."""
    responses = find(archive, level, **keys)
    found = [str(r[UNIQUE_KEY[level]].value) for r in responses]
    assert len(found) == len(set(found)), f"duplicate responses: {found}"
    return set(found)


def multi(value: Any) -> list[str]:
    """The values of a response element as a list, whatever its multiplicity."""
    return [str(v) for v in value] if isinstance(value, MultiValue) else [str(value)]


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
