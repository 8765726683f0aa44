"""The viewer's data: QIDO-RS lists, WADO-RS frames, the tag panel, the ZIP download, the viewer page.

Lookups, ordering, auditing and the role checks touch the index, so they run on both
backends (the ``pacs`` fixture). Decoding does not: the pixel tests share one embedded
SQLCipher archive and one physician's login per module. Expected pixels always come from
pydicom and its plugins reading the original file.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import generate_uid
from werkzeug.test import TestResponse

from pacs.core.audit import EventID
from pacs.core.context import Context, initialise, open_pacs
from tests.conftest import SAMPLE_NAMES
from tests.data.make_series import make_ct_series, make_mr_series, make_us_cine
from tests.web_helpers import ADMIN, Browser, Web, details, make_web

DICOM_JSON = "application/dicom+json"
ACCESSED = str(EventID.INSTANCES_ACCESSED)
EXPORT = str(EventID.EXPORT)
CT_PATIENT = ("QUIXOTE^DULCINEA", "PID-Q-7731")  # the ct_dir fixture's patient


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


# Fixtures: a web viewer per test on each backend, and one shared SQLCipher one for decoding.


@pytest.fixture
def web(pacs: Context) -> Web:
    return make_web(pacs)


@pytest.fixture
def doc(web: Web) -> Browser:
    """A physician, logged in."""
    return web.logged_in(web.user("doc"))


@pytest.fixture
def ct(web: Web, ct_dir: Path) -> Study:
    """The synthetic CT series of six slices (one series), stored."""
    return store_study(web.pacs, sorted(ct_dir.glob("*.dcm")))


@pytest.fixture(scope="module")
def mixed_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One study of three series, numbered 10 (12 slices), 3 (MR) and 2, in the order they are stored.

    Numbers compared as text would put 10 first, and instance 10 before 2.
    """
    root = tmp_path_factory.mktemp("mixed")
    study_uid = generate_uid()
    common = {"rows": 16, "columns": 16, "patient_name": "PANZA^TERESA", "patient_id": "PID-MIX"}
    long = make_ct_series(root / "long", slices=12, study_uid=study_uid, **common)
    for path in long:
        ds = pydicom.dcmread(path)
        ds.SeriesNumber = 10
        ds.save_as(path)
    random.Random(7).shuffle(long)
    mr = make_mr_series(root / "mr", slices=2, study_uid=study_uid, **common)
    short = make_ct_series(root / "short", slices=2, study_uid=study_uid, **common)
    return [*long, *mr, *short]


@pytest.fixture
def mixed(web: Web, mixed_files: list[Path]) -> Study:
    return store_study(web.pacs, mixed_files)


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """A web viewer on one embedded archive, shared by the decoding tests."""
    root = tmp_path_factory.mktemp("lite")
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    opened = open_pacs(settings)
    yield make_web(opened)
    opened.close()


@pytest.fixture(scope="module")
def reader(lite: Web) -> Browser:
    """A physician logged in to :func:`lite` (decoding tests do not change the login)."""
    return lite.logged_in(lite.user("reader"))


# QIDO-RS lists.


def test_series_list_is_dicom_json_with_the_series_attributes(doc: Browser, mixed: Study) -> None:
    response = doc.get(f"/dicomweb/studies/{mixed.uid}/series")
    assert response.status_code == 200
    assert response.mimetype == DICOM_JSON
    first = response.json[0]
    assert {"0020000D", "0020000E", "00080060", "00200011", "00201209"} <= set(first)
    assert _json_value(first, "0020000D") == mixed.uid
    assert _json_value(first, "00080060") == "CT"
    assert _json_value(first, "00201209") == 2


def test_series_are_listed_by_series_number(doc: Browser, mixed: Study) -> None:
    listed = doc.get(f"/dicomweb/studies/{mixed.uid}/series").json
    assert [_json_value(s, "00200011") for s in listed] == [2, 3, 10]
    assert [_json_value(s, "0020000E") for s in listed] == list(mixed.series)


def test_instance_list_is_dicom_json_with_the_instance_attributes(doc: Browser, mixed: Study) -> None:
    series_uid = list(mixed.series)[2]
    response = doc.get(f"/dicomweb/studies/{mixed.uid}/series/{series_uid}/instances")
    assert response.status_code == 200
    assert response.mimetype == DICOM_JSON
    first = response.json[0]
    assert {"00080018", "0020000D", "0020000E", "00200013", "00280010", "00280011"} <= set(first)
    assert _json_value(first, "0020000E") == series_uid
    assert (_json_value(first, "00280010"), _json_value(first, "00280011")) == (16, 16)


def test_instances_are_listed_by_instance_number(doc: Browser, mixed: Study) -> None:
    series_uid = list(mixed.series)[2]  # the 12 slices, stored shuffled
    listed = doc.get(f"/dicomweb/studies/{mixed.uid}/series/{series_uid}/instances").json
    assert [_json_value(i, "00200013") for i in listed] == list(range(1, 13))
    assert [_json_value(i, "00080018") for i in listed] == [sop for sop, _ in mixed.series[series_uid]]


# WADO-RS frames: the stored values and how to show them.


def test_ct_frame_is_the_stored_pixel_values(lite: Web, reader: Browser, ct_dir: Path) -> None:
    study = store_study(lite.pacs, sorted(ct_dir.glob("*.dcm")))
    response = reader.get(study.frame_url(index=2))
    expected = pydicom.dcmread(study.path(2)).pixel_array
    got = samples(response)
    assert response.headers["X-Sample-Format"] == "int16"
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_ct_frame_headers_carry_rescale_window_and_spacing(lite: Web, reader: Browser, ct_dir: Path) -> None:
    study = store_study(lite.pacs, sorted(ct_dir.glob("*.dcm")))
    headers = reader.get(study.frame_url(index=2)).headers
    ds = pydicom.dcmread(study.path(2))
    assert float(headers["X-Rescale-Slope"]) == float(ds.RescaleSlope)
    assert float(headers["X-Rescale-Intercept"]) == float(ds.RescaleIntercept)
    assert float(headers["X-Window-Center"]) == _number(ds.WindowCenter)
    assert float(headers["X-Window-Width"]) == _number(ds.WindowWidth)
    assert [float(v) for v in headers["X-Pixel-Spacing"].split("\\")] == [float(v) for v in ds.PixelSpacing]
    assert headers["X-Photometric"] == "MONOCHROME2"
    assert headers["X-Number-Of-Frames"] == "1"


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_frames_decode_like_pydicom(
    lite: Web, reader: Browser, sample_files: list[Path], name: str
) -> None:
    path = next(p for p in sample_files if p.name == name)
    stored = store_one(lite.pacs, path)
    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames") or 1)
    try:
        expected_frame(path, 1)
    except Exception:  # pydicom and its plugins cannot decode it either (JPEG-lossy.dcm)
        response = reader.get(stored.frame_url(1))
        assert response.status_code == 422
        assert b"cannot be decoded" in response.data
        return
    for number in sorted({1, frames}):
        response = reader.get(stored.frame_url(number))
        expected = expected_frame(path, number)
        got = samples(response)
        assert response.headers["X-Number-Of-Frames"] == str(frames)
        if expected.ndim == 3:
            assert response.headers["X-Sample-Format"] == "rgb8"
            assert_rgb8(got, expected, int(ds.BitsStored))
        else:
            assert response.headers["X-Sample-Format"] == expected.dtype.name
            assert np.array_equal(got, expected), f"frame {number}"


def test_monochrome1_is_reported_and_sent_uninverted(lite: Web, reader: Browser, tmp_path: Path) -> None:
    path = rewritten(
        Path(get_testdata_file("MR_small.dcm")),
        tmp_path / "mono1.dcm",
        PhotometricInterpretation="MONOCHROME1",
    )
    response = reader.get(store_one(lite.pacs, path).frame_url(1))
    assert response.headers["X-Photometric"] == "MONOCHROME1"
    assert np.array_equal(samples(response), pydicom.dcmread(path).pixel_array)


def test_palette_colour_is_sent_as_rgb8_through_its_lookup_table(lite: Web, reader: Browser) -> None:
    path = Path(get_testdata_file("OBXXXX1A.dcm"))
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    response = reader.get(store_one(lite.pacs, path).frame_url(1))
    assert response.headers["X-Sample-Format"] == "rgb8"
    assert response.headers["X-Photometric"] == "RGB"
    assert_rgb8(samples(response), apply_color_lut(ds.pixel_array, ds), bits)


def test_palette_colours_do_not_depend_on_the_brightest_pixel_of_the_frame(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    """A frame that uses only the dark half of the palette keeps its colours (no stretching)."""
    source = Path(get_testdata_file("OBXXXX1A.dcm"))
    dark = (pydicom.dcmread(source).pixel_array // 2).astype(np.uint8)
    path = rewritten(source, tmp_path / "dark.dcm", PixelData=dark.tobytes())
    ds = pydicom.dcmread(path)
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    response = reader.get(store_one(lite.pacs, path).frame_url(1))
    assert_rgb8(samples(response), apply_color_lut(ds.pixel_array, ds), bits)


def test_16_bit_rgb_is_scaled_by_its_bit_depth_not_by_its_brightest_sample(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    source = Path(get_testdata_file("SC_rgb_16bit.dcm"))
    dim = pydicom.dcmread(source).pixel_array // 2
    path = rewritten(source, tmp_path / "dim.dcm", PixelData=dim.astype("<u2").tobytes())
    ds = pydicom.dcmread(path)
    response = reader.get(store_one(lite.pacs, path).frame_url(1))
    assert response.headers["X-Sample-Format"] == "rgb8"
    assert_rgb8(samples(response), ds.pixel_array, int(ds.BitsStored))


@pytest.mark.parametrize("name", ["US1_J2KR.dcm", "SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm"])
def test_colour_samples_are_sent_as_rgb(lite: Web, reader: Browser, name: str) -> None:
    path = Path(get_testdata_file(name))
    response = reader.get(store_one(lite.pacs, path).frame_url(1))
    assert response.headers["X-Photometric"] == "RGB"
    assert np.array_equal(samples(response), pixel_array(path))


def test_ultrasound_cine_frames_and_timing(lite: Web, reader: Browser, tmp_path: Path) -> None:
    path = make_us_cine(tmp_path, frames=6, rows=24, columns=32, frame_time_ms=40.0, seed=3)[0]
    assert not np.array_equal(expected_frame(path, 1), expected_frame(path, 6))
    stored = store_one(lite.pacs, path)
    for number in range(1, 7):
        response = reader.get(stored.frame_url(number))
        assert response.headers["X-Number-Of-Frames"] == "6"
        assert float(response.headers["X-Frame-Time-Ms"]) == 40.0
        assert np.array_equal(samples(response), expected_frame(path, number)), f"frame {number}"


# Not found.


def test_frame_beyond_the_object_is_not_found(doc: Browser, ct: Study, tmp_path: Path) -> None:
    assert doc.get(ct.frame_url(1)).status_code == 200
    assert doc.get(ct.frame_url(2)).status_code == 404
    assert doc.get(ct.frame_url(0)).status_code == 404
    cine = store_one(doc.web.pacs, make_us_cine(tmp_path, frames=3, rows=8, columns=8)[0])
    assert doc.get(cine.frame_url(3)).status_code == 200
    assert doc.get(cine.frame_url(4)).status_code == 404


def test_uids_of_another_study_or_series_are_not_found(doc: Browser, ct: Study, mixed: Study) -> None:
    other_series = mixed.series_uid
    urls = [
        frame_url(mixed.uid, ct.series_uid, ct.sop(), 1),  # another study
        frame_url(ct.uid, other_series, ct.sop(), 1),  # another series
        frame_url(ct.uid, ct.series_uid, mixed.sop(), 1),  # an object of another study
        f"/dicomweb/studies/{generate_uid()}/series",  # no such study
        f"/studies/{mixed.uid}/instances/{ct.sop()}/tags",
    ]
    for url in urls:
        response = doc.get(url)
        assert response.status_code == 404, url
        assert b"QUIXOTE" not in response.data
    # A list is a search: the series of another study matches nothing here.
    response = doc.get(f"/dicomweb/studies/{ct.uid}/series/{other_series}/instances")
    assert response.status_code in (200, 204) and not response.get_json(silent=True)


@pytest.mark.parametrize("bad", ["not-a-uid", "1..2", "1.2.3a", ".1.2", "1.2 ", "9" * 65])
def test_malformed_uids_are_not_found(doc: Browser, ct: Study, bad: str) -> None:
    urls = [
        f"/dicomweb/studies/{bad}/series",
        f"/dicomweb/studies/{bad}/series/{ct.series_uid}/instances",
        f"/dicomweb/studies/{ct.uid}/series/{bad}/instances",
        frame_url(bad, ct.series_uid, ct.sop(), 1),
        frame_url(ct.uid, bad, ct.sop(), 1),
        frame_url(ct.uid, ct.series_uid, bad, 1),
        f"/studies/{ct.uid}/instances/{bad}/tags",
        f"/studies/{bad}",
        f"/studies/{bad}/download",
    ]
    for url in urls:
        assert doc.get(url).status_code == 404, url


# Auditing.


def test_first_api_access_of_a_session_to_a_study_is_audited_once(web: Web, doc: Browser, ct: Study) -> None:
    doc.get(f"/dicomweb/studies/{ct.uid}/series")
    doc.get(f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances")
    for index in range(3):
        assert doc.get(ct.frame_url(index=index)).status_code == 200
    records = web.audit(ACCESSED, user="doc")
    assert [(r.study_uid, r.patient_id, details(r)["how"]) for r in records] == [
        (ct.uid, CT_PATIENT[1], "dicomweb")
    ]


def test_a_frame_request_alone_is_audited(web: Web, doc: Browser, ct: Study) -> None:
    assert doc.get(ct.frame_url()).status_code == 200
    assert [r.study_uid for r in web.audit(ACCESSED, user="doc")] == [ct.uid]


def test_each_new_session_is_audited_again(web: Web, ct: Study) -> None:
    user = web.user("doc")
    for _ in range(2):
        browser = web.logged_in(user)
        browser.get(ct.frame_url())
        browser.get(ct.frame_url(index=1))
    assert [r.study_uid for r in web.audit(ACCESSED, user="doc")] == [ct.uid, ct.uid]


def test_opening_the_viewer_page_is_audited_every_time(web: Web, doc: Browser, ct: Study) -> None:
    for _ in range(2):
        assert doc.get(f"/studies/{ct.uid}").status_code == 200
    records = web.audit(ACCESSED, user="doc")
    assert [(r.study_uid, r.patient_id, details(r)["how"]) for r in records] == [
        (ct.uid, CT_PATIENT[1], "viewer")
    ] * 2


def test_opening_the_viewer_and_reading_its_images_is_one_audit_record(
    web: Web, doc: Browser, ct: Study
) -> None:
    assert doc.get(f"/studies/{ct.uid}").status_code == 200
    doc.get(f"/dicomweb/studies/{ct.uid}/series")
    doc.get(f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances")
    assert doc.get(ct.frame_url()).status_code == 200
    assert [details(r)["how"] for r in web.audit(ACCESSED, user="doc")] == ["viewer"]


# The tag panel and the download.


def test_reading_tags_is_audited_as_opening_the_study(web: Web, doc: Browser, ct: Study) -> None:
    assert doc.get(f"/studies/{ct.uid}/instances/{ct.sop(1)}/tags").status_code == 200
    assert [(r.study_uid, r.patient_id) for r in web.audit(ACCESSED, user="doc")] == [(ct.uid, CT_PATIENT[1])]


def test_tag_panel_lists_the_header_without_pixel_data(doc: Browser, ct: Study) -> None:
    response = doc.get(f"/studies/{ct.uid}/instances/{ct.sop(1)}/tags")
    assert response.status_code == 200
    rows = {row["keyword"]: row for row in response.json}
    assert rows["PatientName"]["value"] == CT_PATIENT[0]
    assert rows["PatientID"]["value"] == CT_PATIENT[1]
    assert rows["SOPInstanceUID"]["value"] == ct.sop(1)
    assert rows["PatientName"]["tag"] == "(0010,0010)" and rows["PatientName"]["vr"] == "PN"
    assert "PixelData" not in rows
    assert all(row["tag"] != "(7FE0,0010)" for row in response.json)
    pixels = pydicom.dcmread(ct.path(1)).PixelData
    assert pixels[:64] not in response.data


def test_download_holds_every_instance_byte_for_byte(doc: Browser, mixed: Study) -> None:
    response = doc.get(f"/studies/{mixed.uid}/download")
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.data)) as bundle:
        assert bundle.testzip() is None
        got = Counter(bundle.read(name) for name in bundle.namelist())
    stored = Counter(path.read_bytes() for files in mixed.series.values() for _, path in files)
    assert got == stored
    assert sum(got.values()) == 16


def test_download_is_audited_as_an_export(web: Web, doc: Browser, ct: Study) -> None:
    doc.get(f"/studies/{ct.uid}/download")
    exports = web.audit(EXPORT, user="doc")
    assert [(r.study_uid, r.patient_id, details(r)["instances"]) for r in exports] == [
        (ct.uid, CT_PATIENT[1], 6)
    ]


# Who may see images.


def test_admin_without_the_physician_role_gets_no_images(web: Web, ct: Study) -> None:
    boss = web.logged_in(web.user("boss", ADMIN))
    pixels = pydicom.dcmread(ct.path()).PixelData
    urls = [
        f"/dicomweb/studies/{ct.uid}/series",
        f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances",
        ct.frame_url(),
        f"/studies/{ct.uid}",
        f"/studies/{ct.uid}/instances/{ct.sop()}/tags",
        f"/studies/{ct.uid}/download",
    ]
    for url in urls:
        response = boss.get(url)
        assert response.status_code == 403, url
        assert "X-Sample-Format" not in response.headers
        assert pixels[:64] not in response.data and b"QUIXOTE" not in response.data
    assert web.audit(ACCESSED) == [] and web.audit(EXPORT) == []


def test_responses_are_not_cached(doc: Browser, ct: Study) -> None:
    urls = [
        f"/dicomweb/studies/{ct.uid}/series",
        f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances",
        ct.frame_url(),
        ct.frame_url(2),  # an error answer
        f"/studies/{ct.uid}",
        f"/studies/{ct.uid}/instances/{ct.sop()}/tags",
        f"/studies/{ct.uid}/download",
    ]
    for url in urls:
        assert "no-store" in doc.get(url).headers.get("Cache-Control", ""), url
