"""Fixtures of the DICOM tests: three studies of two patients, for queries and retrieves."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.conftest import RunningDicom
from tests.data.make_series import make_ct_series
from tests.dicom.helpers import QueryData, _sop_uid, _store_files, _study_uid


@pytest.fixture(scope="module")
def query_files(tmp_path_factory: pytest.TempPathFactory, ct_dir: Path) -> QueryData:
    quixote = sorted(ct_dir.glob("*.dcm"))
    second = make_ct_series(
        tmp_path_factory.mktemp("quixote2"),
        slices=3,
        rows=32,
        columns=32,
        patient_name="QUIXOTE^DULCINEA",
        patient_id="PID-Q-7731",
        study_date="20240301",
        accession="ACC-Q-2",
    )
    panza = make_ct_series(
        tmp_path_factory.mktemp("panza"),
        slices=2,
        rows=32,
        columns=32,
        patient_name="PANZA^SANCHO",
        patient_id="PID-P-0002",
        accession="ACC-P-1",
    )
    first = pydicom.dcmread(quixote[0], stop_before_pixels=True)
    return QueryData(
        quixote_study=str(first.StudyInstanceUID),
        quixote_series=str(first.SeriesInstanceUID),
        quixote_instances=frozenset(_sop_uid(p) for p in quixote),
        quixote_files=tuple(quixote),
        quixote_second_study=_study_uid(second[0]),
        panza_study=_study_uid(panza[0]),
        files=tuple(quixote + second + panza),
    )


@pytest.fixture
def queryable(dicom: RunningDicom, query_files: QueryData) -> QueryData:
    """The query studies stored in the running archive."""
    _store_files(dicom.pacs, list(query_files.files))
    return query_files
