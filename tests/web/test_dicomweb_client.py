"""The third-party ``dicomweb-client`` (PyPI) against a running ``pacs serve`` with a token.

The client speaks to the archive's DICOMweb root over real HTTPS (``requests`` verifies the
server against the archive's CA) with a physician's token of scopes read and store. Every answer
is checked against the objects sent: pydicom's samples (native, JPEG 2000, a native and an RLE
multi-frame, a study of two series) and the synthetic CT series, stored before the server
started, and one more object sent with STOW-RS by the client itself.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacs.core.accounts import Accounts
from pacs.core.context import Context
from pacs.core.tokens import Tokens
from tests.web.browser import PHYSICIAN
from tests.web.dicomweb_helpers import Stored, Study, rewritten, store_one, store_study
from tests.web.test_wado_rendered import modality_values, windowed
from tests.web.viewer_live import PASSWORD, Live, serve_archive

OWNER = "dicomweb"
NATIVE, J2K, MR = "CT_small.dcm", "JPEG2000.dcm", "MR_small.dcm"  # the NM of J2K is sent in MR's study
MULTI, RLE = "emri_small.dcm", "SC_rgb_rle_2frame.dcm"  # 10 native frames; 2 RLE colour frames
SAMPLES = (NATIVE, J2K, MR, MULTI, RLE)
ANY = ("application/dicom", "*")  # the stored transfer syntax


@dataclass(frozen=True)
class Seeded:
    """The synthetic CT study, each sample's file as sent and as stored, and the client's token."""

    ct: Study
    files: dict[str, Path]
    stored: dict[str, Stored]
    token: str  # scopes read and store

    def sent(self, name: str) -> Dataset:
        return pydicom.dcmread(self.files[name])


def _seed(ct_dir: Path, work: Path) -> Callable[[Context], Seeded]:
    def seed(pacs: Context) -> Seeded:
        ct = store_study(pacs, sorted(ct_dir.glob("*.dcm")))
        files = {name: sample(name) for name in SAMPLES}
        mr = pydicom.dcmread(files[MR], stop_before_pixels=True)
        files[J2K] = rewritten(
            files[J2K],
            work / J2K,
            StudyInstanceUID=mr.StudyInstanceUID,
            PatientID=mr.PatientID,
            PatientName=mr.PatientName,
            SeriesNumber=mr.SeriesNumber + 1,
        )
        stored = {name: store_one(pacs, path) for name, path in files.items()}
        accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
        accounts.add(OWNER, PHYSICIAN, PASSWORD)
        _, secret = Tokens(pacs.database, accounts, pacs.audit).create(OWNER, "client", {"read", "store"})
        return Seeded(ct, files, stored, secret)

    return seed


def sample(name: str) -> Path:
    return Path(get_testdata_file(name))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, ct_dir: Path) -> Iterator[Live[Seeded]]:
    root = tmp_path_factory.mktemp("dicomweb-client")
    with serve_archive(root, _seed(ct_dir, root), []) as served:
        yield served


@pytest.fixture(scope="module")
def client(live: Live[Seeded]) -> Iterator[DICOMwebClient]:
    """The client as docs/CLIENTS.md configures it: the archive's CA, the token in a header."""
    session = requests.Session()
    session.verify = str(live.ca)
    session.trust_env = False
    headers = {"Authorization": f"Bearer {live.seeded.token}"}
    yield DICOMwebClient(f"{live.base_url}/dicomweb", session=session, headers=headers)
    session.close()


def value(item: dict[str, Any], keyword: str) -> Any:
    """The first value of `keyword` in a DICOM JSON object (None when absent or empty)."""
    values = item.get(DICOMwebClient.lookup_tag(keyword), {}).get("Value")
    return values[0] if values else None


def uids(items: list[dict[str, Any]], keyword: str) -> list[str]:
    return [value(item, keyword) for item in items]


def assert_same_object(got: Dataset, sent: Dataset) -> None:
    """`got` holds exactly the elements of `sent`, in `sent`'s transfer syntax."""
    assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert Dataset(got) == Dataset(sent)


# QIDO-RS


def test_studies_are_found_by_patient_id_and_by_name_with_a_wildcard(
    client: DICOMwebClient, live: Live[Seeded]
) -> None:
    stored = live.seeded.stored
    found = client.search_for_studies(search_filters={"PatientID": "1CT1"})
    assert uids(found, "StudyInstanceUID") == [stored[NATIVE].study_uid]
    assert value(found[0], "PatientName") == {"Alphabetic": "CompressedSamples^CT1"}
    assert value(found[0], "StudyDate") == "20040119"
    assert value(found[0], "NumberOfStudyRelatedInstances") == 1
    wildcard = client.search_for_studies(search_filters={"PatientName": "CompressedSamples*"})
    assert sorted(uids(wildcard, "StudyInstanceUID")) == sorted(
        {stored[NATIVE].study_uid, stored[MR].study_uid}
    )
    two_series = next(s for s in wildcard if value(s, "StudyInstanceUID") == stored[MR].study_uid)
    assert sorted(two_series[DICOMwebClient.lookup_tag("ModalitiesInStudy")]["Value"]) == ["MR", "NM"]
    assert value(two_series, "NumberOfStudyRelatedInstances") == 2
    assert client.search_for_studies(search_filters={"PatientID": "NOBODY"}) == []


def test_studies_page_with_limit_and_offset(client: DICOMwebClient) -> None:
    everything = uids(client.search_for_studies(), "StudyInstanceUID")
    assert len(everything) >= 5 and len(set(everything)) == len(everything)
    pages = [client.search_for_studies(limit=2, offset=offset) for offset in range(0, len(everything), 2)]
    assert all(len(page) <= 2 for page in pages)
    assert [uid for page in pages for uid in uids(page, "StudyInstanceUID")] == everything
    assert client.search_for_studies(limit=2, offset=len(everything)) == []
    assert uids(client.search_for_studies(limit=2, get_remaining=True), "StudyInstanceUID") == everything


def test_fuzzy_matching_asked_is_answered_with_literal_matching(
    client: DICOMwebClient, live: Live[Seeded]
) -> None:
    found = client.search_for_studies(
        fuzzymatching=True, search_filters={"PatientName": "CompressedSamples^CT1"}
    )
    assert uids(found, "StudyInstanceUID") == [live.seeded.stored[NATIVE].study_uid]
    assert client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "COMPRESED*"}) == []


def test_series_are_found_by_modality_and_by_number(client: DICOMwebClient, live: Live[Seeded]) -> None:
    mr, nm = live.seeded.stored[MR], live.seeded.stored[J2K]
    both = client.search_for_series(mr.study_uid)
    assert sorted(uids(both, "SeriesInstanceUID")) == sorted([mr.series_uid, nm.series_uid])
    only_mr = client.search_for_series(mr.study_uid, search_filters={"Modality": "MR"})
    assert uids(only_mr, "SeriesInstanceUID") == [mr.series_uid]
    assert value(only_mr[0], "NumberOfSeriesRelatedInstances") == 1
    number = int(live.seeded.sent(J2K).SeriesNumber)
    by_number = client.search_for_series(mr.study_uid, search_filters={"SeriesNumber": number})
    assert uids(by_number, "SeriesInstanceUID") == [nm.series_uid]
    everywhere = client.search_for_series(search_filters={"Modality": "MR"})
    assert {mr.series_uid, live.seeded.stored[MULTI].series_uid} <= set(uids(everywhere, "SeriesInstanceUID"))
    assert "CT" not in uids(everywhere, "Modality")


def test_instances_page_within_a_series_with_their_sop_class_and_asked_fields(
    client: DICOMwebClient, live: Live[Seeded]
) -> None:
    ct = live.seeded.ct
    sent = {sop: pydicom.dcmread(path, stop_before_pixels=True) for sop, path in ct.series[ct.series_uid]}
    pages = [
        client.search_for_instances(ct.uid, ct.series_uid, fields=["Rows"], limit=4, offset=offset)
        for offset in (0, 4)
    ]
    assert [len(page) for page in pages] == [4, 2]
    found = [item for page in pages for item in page]
    assert sorted(uids(found, "SOPInstanceUID")) == sorted(sent)
    for item in found:
        ds = sent[value(item, "SOPInstanceUID")]
        assert value(item, "SOPClassUID") == ds.SOPClassUID
        assert value(item, "InstanceNumber") == ds.InstanceNumber
        assert value(item, "Rows") == ds.Rows == 64


def test_an_instance_is_found_from_the_top_by_its_uid(client: DICOMwebClient, live: Live[Seeded]) -> None:
    multi = live.seeded.stored[MULTI]
    found = client.search_for_instances(search_filters={"SOPInstanceUID": multi.sop_uid}, fields=["all"])
    assert uids(found, "SOPInstanceUID") == [multi.sop_uid]
    assert value(found[0], "NumberOfFrames") == 10
    assert value(found[0], "StudyInstanceUID") == multi.study_uid


# WADO-RS retrieve


def test_a_study_is_retrieved_as_the_objects_sent(client: DICOMwebClient, live: Live[Seeded]) -> None:
    ct = live.seeded.ct
    got = {ds.SOPInstanceUID: ds for ds in client.retrieve_study(ct.uid)}
    sent = {sop: pydicom.dcmread(path) for sop, path in ct.series[ct.series_uid]}
    assert sorted(got) == sorted(sent)
    for sop, ds in sent.items():
        assert_same_object(got[sop], ds)


def test_a_study_retrieve_over_https_has_a_length_and_is_not_chunked(live: Live[Seeded]) -> None:
    ct = live.seeded.ct
    session = requests.Session()
    session.verify, session.trust_env = str(live.ca), False
    headers = {
        "Authorization": f"Bearer {live.seeded.token}",
        "Accept": "multipart/related; type=application/dicom",
    }
    with session.get(f"{live.base_url}/dicomweb/studies/{ct.uid}", headers=headers, stream=True) as response:
        body = response.raw.read()
    session.close()
    assert "Transfer-Encoding" not in response.headers
    assert response.headers["Content-Length"] == str(len(body))
    sent = [path.read_bytes() for _, path in ct.series[ct.series_uid]]
    assert all(original in body for original in sent)


def test_a_series_is_retrieved_as_the_object_sent(client: DICOMwebClient, live: Live[Seeded]) -> None:
    mr = live.seeded.stored[MR]
    (got,) = client.retrieve_series(mr.study_uid, mr.series_uid)
    assert_same_object(got, live.seeded.sent(MR))


@pytest.mark.parametrize("name", [NATIVE, J2K, RLE])
def test_an_instance_is_retrieved_in_its_stored_syntax(
    client: DICOMwebClient, live: Live[Seeded], name: str
) -> None:
    stored = live.seeded.stored[name]
    got = client.retrieve_instance(stored.study_uid, stored.series_uid, stored.sop_uid, media_types=(ANY,))
    assert_same_object(got, live.seeded.sent(name))


def test_a_compressed_instance_is_retrieved_decompressed_when_asked(
    client: DICOMwebClient, live: Live[Seeded]
) -> None:
    stored = live.seeded.stored[J2K]
    asked = (("application/dicom", ExplicitVRLittleEndian),)
    got = client.retrieve_instance(stored.study_uid, stored.series_uid, stored.sop_uid, media_types=asked)
    assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(got.pixel_array, live.seeded.sent(J2K).pixel_array)


# WADO-RS metadata and bulk data


def test_study_series_and_instance_metadata_describe_the_objects_sent(
    client: DICOMwebClient, live: Live[Seeded]
) -> None:
    mr, nm = live.seeded.stored[MR], live.seeded.stored[J2K]
    study = client.retrieve_study_metadata(mr.study_uid)
    assert sorted(uids(study, "SOPInstanceUID")) == sorted([mr.sop_uid, nm.sop_uid])
    (series,) = client.retrieve_series_metadata(mr.study_uid, mr.series_uid)
    instance = client.retrieve_instance_metadata(mr.study_uid, mr.series_uid, mr.sop_uid)
    assert series == instance
    sent = live.seeded.sent(MR)
    parsed = Dataset.from_json(instance, bulk_data_uri_handler=lambda tag, vr, uri: None)
    for keyword in ("PatientName", "PatientID", "Rows", "Columns", "WindowCenter", "SOPClassUID"):
        assert parsed[keyword].value == sent[keyword].value, keyword
    uri = instance[DICOMwebClient.lookup_tag("PixelData")]["BulkDataURI"]
    assert client.retrieve_bulkdata(uri) == [sent.PixelData]


# WADO-RS frames


@pytest.mark.parametrize("asked", [None, (("application/octet-stream", ExplicitVRLittleEndian),)])
def test_native_frames_are_the_stored_frames(
    client: DICOMwebClient, live: Live[Seeded], asked: tuple[tuple[str, str], ...] | None
) -> None:
    """dicomweb-client's default (``type="*/*"``) and octet-stream asked by name."""
    multi, sent = live.seeded.stored[MULTI], live.seeded.sent(MULTI)
    size = sent.Rows * sent.Columns * sent.BitsAllocated // 8
    got = client.retrieve_instance_frames(
        multi.study_uid, multi.series_uid, multi.sop_uid, [1, 5, 10], media_types=asked
    )
    assert got == [sent.PixelData[(n - 1) * size : n * size] for n in (1, 5, 10)]


@pytest.mark.parametrize(("name", "media_type"), [(J2K, "image/jp2"), (RLE, "image/x-dicom-rle")])
def test_compressed_frames_come_as_stored(
    client: DICOMwebClient, live: Live[Seeded], name: str, media_type: str
) -> None:
    stored, sent = live.seeded.stored[name], live.seeded.sent(name)
    count = int(sent.get("NumberOfFrames") or 1)
    asked = ((media_type, sent.file_meta.TransferSyntaxUID),)
    numbers = list(range(1, count + 1))
    got = client.retrieve_instance_frames(
        stored.study_uid, stored.series_uid, stored.sop_uid, numbers, media_types=asked
    )
    assert got == [get_frame(sent.PixelData, n - 1, number_of_frames=count) for n in numbers]


def test_a_compressed_frame_asked_as_octets_is_decompressed(
    client: DICOMwebClient, live: Live[Seeded]
) -> None:
    stored, sent = live.seeded.stored[J2K], live.seeded.sent(J2K)
    asked = (("application/octet-stream", ExplicitVRLittleEndian),)
    (got,) = client.retrieve_instance_frames(
        stored.study_uid, stored.series_uid, stored.sop_uid, [1], media_types=asked
    )
    expected = pixel_array(sent)
    assert np.array_equal(np.frombuffer(got, dtype=expected.dtype.newbyteorder("<")), expected.ravel())


# WADO-RS rendered


def test_a_rendered_instance_is_the_stored_image_under_its_window(
    client: DICOMwebClient, live: Live[Seeded]
) -> None:
    mr = live.seeded.stored[MR]
    png = client.retrieve_instance_rendered(
        mr.study_uid, mr.series_uid, mr.sop_uid, media_types=("image/png",)
    )
    got = np.asarray(Image.open(io.BytesIO(png)))
    sent = live.seeded.sent(MR)
    assert np.array_equal(
        got, windowed(modality_values(live.seeded.files[MR]), sent.WindowCenter, sent.WindowWidth)
    )


# STOW-RS


def test_an_object_stored_with_stow_is_found_and_retrieved_as_sent(
    client: DICOMwebClient, live: Live[Seeded]
) -> None:
    ds = live.seeded.sent(NATIVE)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName = "STOW-1", "SENT^BY^STOW"
    answer = client.store_instances([ds])
    assert "FailedSOPSequence" not in answer
    (referenced,) = answer.ReferencedSOPSequence
    assert referenced.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert referenced.ReferencedSOPClassUID == ds.SOPClassUID
    found = client.search_for_studies(search_filters={"PatientID": "STOW-1"})
    assert uids(found, "StudyInstanceUID") == [ds.StudyInstanceUID]
    got = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert_same_object(got, ds)
