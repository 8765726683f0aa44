"""WADO-RS retrieve (PS3.18 10.4) of studies, series and instances as multipart/related application/dicom.

Each part is checked against the file that was stored: byte for byte in the stored syntax,
pixel for pixel (against pydicom's decode of the original) after transcoding.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless, generate_uid

from tests.conftest import SAMPLE_NAMES
from tests.web import dicomweb_helpers
from tests.web.dicomweb_helpers import ACCESSED, EXPORT, Study, rewritten, store_one, store_study
from tests.web.wado_helpers import ANY_SYNTAX, Part, parts, url
from tests.web.web_helpers import ADMIN, Browser, Web, details

DICOM = "application/dicom"
lite, reader = dicomweb_helpers.lite, dicomweb_helpers.reader  # the module's shared archive and physician


def asking(syntax: str) -> dict[str, str]:
    return {"Accept": f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'}


def originals(study: Study, series: str | None = None) -> list[bytes]:
    chosen = [series] if series else list(study.series)
    return [path.read_bytes() for uid in chosen for _, path in study.series[uid]]


def parsed(part: Part) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(part.body))


# Retrieve in the stored transfer syntax, at each level, found and audited through the index.


def test_a_study_arrives_as_its_stored_objects_in_series_and_instance_order(
    doc: Browser, mixed: Study
) -> None:
    response = doc.client.get(url(mixed.uid), headers={"Accept": ANY_SYNTAX})
    got = parts(response, DICOM)
    assert [part.body for part in got] == originals(mixed)
    assert all(part.media_type == DICOM for part in got)
    first = parsed(got[0])
    assert got[0].params["transfer-syntax"] == first.file_meta.TransferSyntaxUID
    assert got[0].headers["content-location"] == url(mixed.uid, mixed.series_uid, mixed.sop())


def test_a_series_retrieve_carries_that_series_only(doc: Browser, mixed: Study) -> None:
    second = list(mixed.series)[1]
    response = doc.client.get(url(mixed.uid, second), headers={"Accept": ANY_SYNTAX})
    assert [part.body for part in parts(response, DICOM)] == originals(mixed, second)


def test_an_instance_asked_without_accept_is_the_stored_object_streamed(doc: Browser, ct: Study) -> None:
    response = doc.get(url(ct.uid, ct.series_uid, ct.sop(3)))
    assert response.is_streamed
    assert [part.body for part in parts(response, DICOM)] == [ct.path(3).read_bytes()]


def test_a_retrieve_of_stored_objects_declares_its_exact_length(doc: Browser, mixed: Study) -> None:
    for target in (url(mixed.uid), url(mixed.uid, list(mixed.series)[1])):
        response = doc.client.get(target, headers={"Accept": ANY_SYNTAX})
        assert response.headers["Content-Length"] == str(len(response.data))
        assert [part.body for part in parts(response, DICOM)] == originals(
            mixed, None if target == url(mixed.uid) else list(mixed.series)[1]
        )


def test_a_retrieve_is_audited_as_an_export_and_the_study_as_accessed_once(
    web: Web, doc: Browser, ct: Study
) -> None:
    for target in (url(ct.uid), url(ct.uid, ct.series_uid), url(ct.uid, ct.series_uid, ct.sop())):
        assert doc.get(target).status_code == 200
    exports = web.audit(EXPORT, user="doc")
    assert [(r.study_uid, r.patient_id, details(r)["instances"]) for r in exports] == [
        (ct.uid, ct.patient_id, 6),
        (ct.uid, ct.patient_id, 6),
        (ct.uid, ct.patient_id, 1),
    ]
    assert {details(r)["what"] for r in exports} == {"study downloaded over WADO-RS"}
    assert [r.study_uid for r in web.audit(ACCESSED, user="doc")] == [ct.uid]


def test_objects_are_found_only_under_their_own_study_and_series(
    doc: Browser, ct: Study, mixed: Study
) -> None:
    for target in (
        url("1.2.3.4"),
        url(ct.uid, mixed.series_uid),
        url(mixed.uid, ct.series_uid, ct.sop()),
        url(ct.uid, list(mixed.series)[1], ct.sop()),
        url("not-a-uid"),
    ):
        response = doc.get(target)
        assert response.status_code == 404, target
        assert b"DICM" not in response.data


def test_an_admin_without_the_physician_role_retrieves_and_renders_nothing(web: Web, ct: Study) -> None:
    boss = web.logged_in(web.user("boss", ADMIN))
    instance = url(ct.uid, ct.series_uid, ct.sop())
    for target in (
        url(ct.uid),
        url(ct.uid, ct.series_uid),
        instance,
        instance + "/rendered",
        instance + "/frames/1",
    ):
        response = boss.get(target)
        assert response.status_code == 403 and b"DICM" not in response.data
    assert web.audit(EXPORT) == []


# Transcoding: what the client asks for; the stored object stays as it was.


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_sample_asked_in_explicit_little_endian_arrives_pixel_equal(
    lite: Web, reader: Browser, name: str
) -> None:
    path = Path(get_testdata_file(name))
    stored = store_one(lite.pacs, path)
    response = reader.client.get(
        url(stored.study_uid, stored.series_uid, stored.sop_uid), headers=asking(ExplicitVRLittleEndian)
    )
    [part] = parts(response, DICOM)
    assert part.params["transfer-syntax"] == ExplicitVRLittleEndian
    got, original = parsed(part), pydicom.dcmread(path)
    assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert got.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(got.pixel_array, original.pixel_array)
    with lite.pacs.archive.open(stored.sop_uid) as kept:
        assert kept.read() == path.read_bytes()


def test_implicit_little_endian_is_sent_when_only_that_is_asked(
    lite: Web, reader: Browser, ct_dir: Path
) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[0]
    stored = store_one(lite.pacs, path)
    target = url(stored.study_uid, stored.series_uid, stored.sop_uid)
    response = reader.client.get(target, headers=asking(ImplicitVRLittleEndian))
    [part] = parts(response, DICOM)
    got = parsed(part)
    assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert np.array_equal(got.pixel_array, pydicom.dcmread(path).pixel_array)


def test_a_transcoded_retrieve_is_streamed_without_a_declared_length(lite: Web, reader: Browser) -> None:
    stored = store_one(lite.pacs, Path(get_testdata_file("JPEG2000.dcm")))
    target = url(stored.study_uid, stored.series_uid, stored.sop_uid)
    response = reader.client.get(target, headers=asking(ExplicitVRLittleEndian))
    assert "Content-Length" not in response.headers
    [part] = parts(response, DICOM)
    assert parsed(part).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_a_syntax_the_archive_cannot_produce_is_not_acceptable(
    lite: Web, reader: Browser, ct_dir: Path
) -> None:
    stored = store_one(lite.pacs, sorted(ct_dir.glob("*.dcm"))[1])
    target = url(stored.study_uid, stored.series_uid, stored.sop_uid)
    exports = len(lite.audit(EXPORT, user="reader"))
    for accept in (asking(JPEGLSLossless), {"Accept": "application/json"}, {"Accept": "image/jpeg"}):
        response = reader.client.get(target, headers=accept)
        assert response.status_code == 406, accept
        assert b"DICM" not in response.data
    assert len(lite.audit(EXPORT, user="reader")) == exports


def test_objects_that_cannot_be_sent_as_asked_are_left_out_with_a_warning(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    new = {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid()}
    jpeg_ls, native = (
        rewritten(Path(get_testdata_file(name)), tmp_path / name, **new)
        for name in ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm")
    )
    study = store_study(lite.pacs, [jpeg_ls, native])
    response = reader.client.get(url(study.uid), headers=asking(JPEGLSLossless))
    assert response.status_code == 206
    assert response.headers["Warning"].startswith("299 ")
    assert [part.body for part in parts(response, DICOM)] == [jpeg_ls.read_bytes()]
