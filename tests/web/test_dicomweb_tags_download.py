"""The tag panel and the ZIP download: the header without pixel data, every instance byte for byte."""

from __future__ import annotations

import io
import zipfile
from collections import Counter

import pydicom

from tests.web.dicomweb_helpers import ACCESSED, CT_PATIENT, EXPORT, Study
from tests.web.web_helpers import Browser, Web, details

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
