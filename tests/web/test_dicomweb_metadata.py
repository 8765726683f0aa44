"""WADO-RS metadata (DICOM JSON with bulk data URIs) and the bulk data those URIs name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from tests.web.dicomweb_helpers import ACCESSED, DICOM_JSON, Study, store_study
from tests.web.wado_helpers import OCTETS, parts, url
from tests.web.web_helpers import ADMIN, Browser, Web

HOST = "https://localhost"
BIG = bytes(range(256)) * 12  # 3072 bytes: over the bulk data threshold
SMALL = b"\x01\x02\x03\x04"
PRIVATE_BLOB, NESTED_BLOB = 0x00091010, 0x00091020


def expected_json(path: Path, instance_url: str) -> dict[str, Any]:
    """pydicom's JSON of the stored file before Pixel Data, bulk values named as the archive names them."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    where = {PRIVATE_BLOB: f"{PRIVATE_BLOB:08X}", NESTED_BLOB: f"00089215/1/{NESTED_BLOB:08X}"}

    def uri(elem: DataElement) -> str:
        return f"{HOST}{instance_url}/bulkdata/{where.get(elem.tag, f'{elem.tag:08X}')}"

    return ds.to_json_dict(1024, uri)


@pytest.fixture
def bulky(web: Web, ct_dir: Path, tmp_path: Path) -> Study:
    """One CT slice with a large private OB value, a small one, and a large one inside a sequence."""
    ds = pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.add_new(0x00090010, "LO", "PACS TEST")
    ds.add_new(PRIVATE_BLOB, "OB", BIG)
    ds.add_new(0x00091011, "OB", SMALL)
    item = Dataset()
    item.add_new(0x00090010, "LO", "PACS TEST")
    item.add_new(NESTED_BLOB, "OB", BIG[::-1])
    ds.DerivationCodeSequence = [item]
    path = tmp_path / "bulky.dcm"
    ds.save_as(path, enforce_file_format=True)
    return store_study(web.pacs, [path])


def test_series_metadata_is_each_instances_header_with_a_pixel_data_uri(doc: Browser, ct: Study) -> None:
    response = doc.get(url(ct.uid, ct.series_uid, tail="/metadata"))
    assert response.status_code == 200 and response.mimetype == DICOM_JSON
    found = response.json
    sops = [sop for sop, _ in ct.series[ct.series_uid]]
    assert [item["00080018"]["Value"][0] for item in found] == sops
    for item, (sop, path) in zip(found, ct.series[ct.series_uid], strict=True):
        instance = url(ct.uid, ct.series_uid, sop)
        pixel = item.pop("7FE00010")
        assert pixel == {"vr": "OW", "BulkDataURI": f"{HOST}{instance}/bulkdata/7FE00010"}
        assert item == expected_json(path, instance)


def test_study_and_instance_metadata(doc: Browser, mixed: Study) -> None:
    study = doc.get(url(mixed.uid, tail="/metadata")).json
    everything = [sop for series in mixed.series.values() for sop, _ in series]
    assert [item["00080018"]["Value"][0] for item in study] == everything
    series_uid = list(mixed.series)[1]
    sop, path = mixed.series[series_uid][1]
    one = doc.get(url(mixed.uid, series_uid, sop, "/metadata")).json
    assert len(one) == 1
    one[0].pop("7FE00010")
    assert one[0] == expected_json(path, url(mixed.uid, series_uid, sop))


def test_large_binary_values_are_bulk_data_and_small_ones_inline(doc: Browser, bulky: Study) -> None:
    instance = url(bulky.uid, bulky.series_uid, bulky.sop())
    item = doc.get(f"{instance}/metadata").json[0]
    assert item["00091010"] == {"vr": "OB", "BulkDataURI": f"{HOST}{instance}/bulkdata/00091010"}
    assert "InlineBinary" in item["00091011"]
    nested = item["00089215"]["Value"][0]["00091020"]
    assert nested == {"vr": "OB", "BulkDataURI": f"{HOST}{instance}/bulkdata/00089215/1/00091020"}
    for uri, value in ((item["00091010"]["BulkDataURI"], BIG), (nested["BulkDataURI"], BIG[::-1])):
        response = doc.client.get(uri.removeprefix(HOST), headers={"Accept": OCTETS})
        assert [part.body for part in parts(response, "application/octet-stream")] == [value]


def test_pixel_data_bulk_data_is_the_stored_value(doc: Browser, ct: Study) -> None:
    item = doc.get(url(ct.uid, ct.series_uid, ct.sop(), "/metadata")).json[0]
    response = doc.client.get(item["7FE00010"]["BulkDataURI"].removeprefix(HOST), headers={"Accept": OCTETS})
    [part] = parts(response, "application/octet-stream")
    assert part.body == pydicom.dcmread(ct.path()).PixelData


def test_compressed_pixel_data_comes_one_part_per_frame(doc: Browser, web: Web) -> None:
    path = Path(pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm"))
    stored = store_study(web.pacs, [path])
    instance = url(stored.uid, stored.series_uid, stored.sop())
    item = doc.get(f"{instance}/metadata").json[0]
    assert item["7FE00010"]["vr"] == "OB"
    found = parts(doc.client.get(f"{instance}/bulkdata/7FE00010"), "application/octet-stream")
    ds = pydicom.dcmread(path)
    assert [part.body for part in found] == list(generate_frames(ds.PixelData, number_of_frames=2))
    assert {part.params.get("transfer-syntax") for part in found} == {ds.file_meta.TransferSyntaxUID}


def test_what_is_not_there_is_not_found(doc: Browser, ct: Study, mixed: Study) -> None:
    other = mixed.series_uid
    for path in (
        url(generate_uid(), tail="/metadata"),
        url(ct.uid, other, tail="/metadata"),  # a series of another study
        url(mixed.uid, other, ct.sop(), "/metadata"),  # an object of another study
        url("not-a-uid", tail="/metadata"),
        url(ct.uid, ct.series_uid, ct.sop(), "/bulkdata/00091010"),
        url(ct.uid, ct.series_uid, ct.sop(), "/bulkdata/00100010"),  # not binary
        url(ct.uid, ct.series_uid, ct.sop(), "/bulkdata/nonsense"),
    ):
        assert doc.get(path).status_code == 404, path
    bulk = url(ct.uid, ct.series_uid, ct.sop(), "/bulkdata/7FE00010")
    assert doc.client.get(bulk, headers={"Accept": "application/dicom+json"}).status_code == 406


def test_metadata_is_audited_once_as_the_studys_access(web: Web, doc: Browser, ct: Study) -> None:
    for tail in ("/metadata", f"/series/{ct.series_uid}/metadata"):
        assert doc.get(url(ct.uid) + tail).status_code == 200
    assert [record.study_uid for record in web.audit(ACCESSED, user="doc")] == [ct.uid]


def test_a_new_version_of_an_instance_has_new_metadata(
    doc: Browser, web: Web, ct: Study, tmp_path: Path
) -> None:
    instance = url(ct.uid, ct.series_uid, ct.sop(), "/metadata")
    assert doc.get(instance).json[0]["00081030"]["Value"] != ["CHANGED"]
    ds = pydicom.dcmread(ct.path())
    ds.StudyDescription = "CHANGED"
    ds.save_as(tmp_path / "changed.dcm")
    web.pacs.archive.store(tmp_path / "changed.dcm")
    assert doc.get(instance).json[0]["00081030"]["Value"] == ["CHANGED"]


def test_admin_without_the_physician_role_gets_no_metadata(web: Web, ct: Study) -> None:
    boss = web.logged_in(web.user("boss", ADMIN))
    for tail in (
        "/metadata",
        f"/series/{ct.series_uid}/metadata",
        f"/series/{ct.series_uid}/instances/{ct.sop()}/bulkdata/7FE00010",
    ):
        response = boss.get(url(ct.uid) + tail)
        assert response.status_code == 403, tail
        assert b"QUIXOTE" not in response.data
    assert web.audit(ACCESSED) == []
