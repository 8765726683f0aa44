"""Helpers of the DICOMweb tests: stored studies and objects, frame URLs, and the pixels pydicom expects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.multival import MultiValue
from pydicom.pixels import pixel_array
from pydicom.uid import generate_uid
from werkzeug.test import TestResponse

from pacs.core.audit import EventID
from pacs.core.context import Context, initialise, open_pacs
from tests.web.web_helpers import Browser, Web, make_web

DICOM_JSON = "application/dicom+json"
ACCESSED = str(EventID.INSTANCES_ACCESSED)
EXPORT = str(EventID.EXPORT)
CT_PATIENT = ("QUIXOTE^DULCINEA", "PID-Q-7731")  # the ct_dir fixture's patient
RAW = {"Accept": "application/octet-stream"}  # a frame in the viewer's form, never packed (else PS3.18's)


@dataclass(frozen=True)
class Study:
    """A stored study: its UIDs and, per series in order, (SOP Instance UID, original file) by number."""

    uid: str
    patient_id: str
    series: dict[str, list[tuple[str, Path]]]

    @property
    def series_uid(self) -> str:
        return next(iter(self.series))

    def sop(self, index: int = 0) -> str:
        return self.series[self.series_uid][index][0]

    def path(self, index: int = 0) -> Path:
        return self.series[self.series_uid][index][1]

    def frame_url(self, number: int = 1, index: int = 0) -> str:
        return frame_url(self.uid, self.series_uid, self.sop(index), number)


@dataclass(frozen=True)
class Stored:
    """One stored object and where to fetch its frames."""

    study_uid: str
    series_uid: str
    sop_uid: str

    def frame_url(self, number: int) -> str:
        return frame_url(self.study_uid, self.series_uid, self.sop_uid, number)


def frame_url(study: str, series: str, sop: str, number: int) -> str:
    return f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{number}"


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """A web viewer on one embedded archive, for a module's tests that do not depend on the index."""
    root = tmp_path_factory.mktemp("lite")
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    opened = open_pacs(settings)
    yield make_web(opened)
    opened.close()


@pytest.fixture(scope="module")
def reader(lite: Web) -> Browser:
    """A physician logged in to :func:`lite` (the tests do not change the login)."""
    return lite.logged_in(lite.user("reader"))


def viewer_frame(browser: Browser, url: str) -> TestResponse:
    """The frame at `url` in the viewer's form: its samples and ``X-`` headers."""
    return browser.client.get(url, headers=RAW)


def store_study(pacs: Context, files: list[Path]) -> Study:
    """Store `files` (in the given order) and describe the study they make up."""
    series: dict[str, list[tuple[int, str, Path]]] = {}
    numbers: dict[str, int] = {}
    study_uid = patient_id = ""
    for path in files:
        result = pacs.archive.store(path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        study_uid, patient_id = result.study_uid, result.patient_id
        numbers[result.series_uid] = int(ds.SeriesNumber)
        series.setdefault(result.series_uid, []).append((int(ds.InstanceNumber), result.sop_uid, path))
    ordered = sorted(series, key=numbers.__getitem__)
    return Study(
        study_uid,
        patient_id,
        {uid: [(sop, path) for _, sop, path in sorted(series[uid])] for uid in ordered},
    )


def store_one(pacs: Context, path: Path) -> Stored:
    result = pacs.archive.store(path)
    return Stored(result.study_uid, result.series_uid, result.sop_uid)


def samples(response: TestResponse) -> np.ndarray:
    """The frame in `response`, as the viewer's script reads it."""
    assert response.status_code == 200, (response.status_code, response.data[:200])
    assert response.mimetype == "application/octet-stream"
    sample_format = response.headers["X-Sample-Format"]
    rows, columns = int(response.headers["X-Rows"]), int(response.headers["X-Columns"])
    if sample_format == "rgb8":
        return np.frombuffer(response.data, dtype=np.uint8).reshape(rows, columns, 3)
    dtype = np.dtype(sample_format).newbyteorder("<")
    return np.frombuffer(response.data, dtype=dtype).reshape(rows, columns)


def expected_frame(path: Path, number: int) -> np.ndarray:
    """Frame `number` (1-based) of the file at `path`, decoded by pydicom.

    The dataset is read first: ``pixel_array(path)`` cannot find the pixel data of a
    deflated file.
    """
    return pixel_array(pydicom.dcmread(path), index=number - 1)


def to_rgb8(array: np.ndarray, bits: int) -> np.ndarray:
    """`bits`-bit colour values scaled to 8 bits (the top byte)."""
    return (array >> (bits - 8)).astype(np.uint8) if bits > 8 else array.astype(np.uint8)


def assert_rgb8(got: np.ndarray, expected: np.ndarray, bits: int) -> None:
    """`got` is `expected` (`bits`-bit colour) in 8 bits: exactly, or up to the rounding of 16 to 8 bits."""
    assert got.shape == expected.shape
    if bits == 8:
        assert np.array_equal(got, expected)
        return
    difference = np.abs(got.astype(np.int32) - to_rgb8(expected, bits).astype(np.int32))
    worst = int(difference.max())
    assert worst <= 1, f"{int((difference > 1).sum())} samples differ, by up to {worst}"


def rewritten(source: Path, target: Path, **changes: Any) -> Path:
    """`source` saved as `target` as a new object (new SOP Instance UID), with `changes` applied."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(target)
    return target


def _number(value: Any) -> float:
    return float(value[0] if isinstance(value, list | tuple | MultiValue) else value)


def _json_value(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]
