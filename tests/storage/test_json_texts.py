"""Each instance's DICOM JSON, written at ingest and kept sealed in the index (storage/json_texts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select, update

from pacs.core.context import Context
from storage import ingest
from storage.crypto import IntegrityError
from storage.instance_json import ROOT, instance_path, instance_text
from storage.models import Instance
from storage.records import InstanceInfo
from storage.walker import Part10Walker
from tests.conftest import SAMPLE_NAMES
from tests.storage.test_frame_map import dataset, native_frames, store


def _kept(pacs: Context, info: InstanceInfo) -> bytes | None:
    with pacs.database.read() as session:
        return session.scalar(select(Instance.dicom_json).where(Instance.blob_id == info.ref.blob_id))


def _set_kept(pacs: Context, info: InstanceInfo, value: bytes | None) -> None:
    with pacs.database.write() as session:
        session.execute(update(Instance).where(Instance.blob_id == info.ref.blob_id).values(dicom_json=value))


def _built(pacs: Context, info: InstanceInfo) -> str:
    """The text as the first request builds it, from the header read out of the blob."""
    (ds,) = pacs.archive.data_sets([info])
    return instance_text(
        ds, info.transfer_syntax, instance_path(info.study_uid, info.series_uid, info.sop_uid)
    )


def _stored_sample(pacs: Context, name: str) -> InstanceInfo:
    return pacs.archive.instance(pacs.archive.store(Path(get_testdata_file(name))).sop_uid)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_text_written_at_ingest_is_the_one_built_from_the_stored_header(pacs: Context, name: str) -> None:
    info = _stored_sample(pacs, name)
    assert _kept(pacs, info) is not None
    assert pacs.archive.json_texts.texts([info]) == [_built(pacs, info)]


def test_the_kept_text_is_sealed_not_readable_in_the_index(pacs: Context) -> None:
    info = _stored_sample(pacs, "CT_small.dcm")
    kept = _kept(pacs, info)
    assert kept is not None
    name = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName).encode()
    assert name not in kept and b"StudyInstanceUID" not in kept and info.sop_uid.encode() not in kept
    text = pacs.archive.json_texts.texts([info])[0]
    assert json.loads(text.replace(ROOT, "https://host/dicomweb"))["00100010"]["Value"]


def test_the_uris_of_a_text_begin_with_the_root_mark_and_no_value_holds_one(pacs: Context) -> None:
    ds = dataset(1)
    ds.PixelData = b"".join(native_frames(1))
    ds.ImageComments = "before\x00after"  # a NUL in a value is escaped by JSON, never a mark
    (text,) = pacs.archive.json_texts.texts([store(pacs, ds)])
    item = json.loads(text.replace(ROOT, "https://host/dicomweb"))
    assert item["7FE00010"]["BulkDataURI"].startswith("https://host/dicomweb/studies/")
    assert text.count(ROOT) == 1
    assert item["00204000"]["Value"] == ["before\x00after"]


def test_a_kept_text_altered_in_the_index_fails_authentication(pacs: Context) -> None:
    info = _stored_sample(pacs, "MR_small.dcm")
    kept = _kept(pacs, info)
    assert kept is not None
    _set_kept(pacs, info, kept[:-1] + bytes([kept[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        pacs.archive.json_texts.texts([info])


def test_a_kept_text_moved_to_another_instance_fails_authentication(pacs: Context) -> None:
    first, second = _stored_sample(pacs, "CT_small.dcm"), _stored_sample(pacs, "MR_small.dcm")
    _set_kept(pacs, second, _kept(pacs, first))
    with pytest.raises(IntegrityError):
        pacs.archive.json_texts.texts([second])


def test_an_instance_without_a_kept_text_gets_one_at_its_first_request(pacs: Context) -> None:
    with_text, without = _stored_sample(pacs, "CT_small.dcm"), _stored_sample(pacs, "JPEG2000.dcm")
    _set_kept(pacs, without, None)
    texts = pacs.archive.json_texts.texts([with_text, without])
    assert texts == [_built(pacs, with_text), _built(pacs, without)]
    assert _kept(pacs, without) is not None
    assert pacs.archive.json_texts.texts([without]) == [texts[1]]


def test_a_head_longer_than_the_kept_limit_is_left_to_the_first_request(
    pacs: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "HEAD_KEPT", 256)
    info = _stored_sample(pacs, "CT_small.dcm")
    assert _kept(pacs, info) is None
    assert pacs.archive.json_texts.texts([info]) == [_built(pacs, info)]


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_the_walk_keeps_exactly_the_data_set_before_pixel_data_in_pieces_of_any_size(piece: int) -> None:
    path = Path(get_testdata_file("CT_small.dcm"))
    data = path.read_bytes()
    walker = Part10Walker(max_header=1 << 20, keep_head=1 << 20)
    for start in range(0, len(data), piece):
        walker.feed(data[start : start + piece])
    walked = walker.close()
    found = walked.frame_map
    start = found.dataset_start
    assert walked.head == data[start : start + found.pixel_start]


def test_the_walk_keeps_no_head_unless_asked() -> None:
    walker = Part10Walker(max_header=1 << 20)
    walker.feed(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    assert walker.close().head is None
