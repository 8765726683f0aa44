"""Many objects at once: frame maps looked up together and headers read ahead (storage/frames.py)."""

from __future__ import annotations

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian
from sqlalchemy import event, update

from pacs.core.context import Context
from storage.errors import NotFoundError
from storage.models import Instance
from storage.records import InstanceInfo
from tests.storage.test_frame_map import ROWS, dataset, native_frames, store

SYNTAXES = [None, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]


def _stored(pacs: Context) -> list[InstanceInfo]:
    infos = []
    for syntax in SYNTAXES:
        ds = dataset(2, syntax) if syntax else dataset(2)
        ds.PixelData = b"".join(native_frames(2))
        infos.append(store(pacs, ds))
    return infos


def test_the_data_sets_of_many_objects_equal_each_read_alone_without_the_pixel_data(pacs: Context) -> None:
    infos = _stored(pacs)
    together = list(pacs.archive.data_sets(infos))
    assert len(together) == len(infos)
    for info, ds in zip(infos, together, strict=True):
        alone = pacs.archive.dataset_without_pixels(info)
        assert "PixelData" not in ds and ds.Rows == ROWS
        assert ds.SOPInstanceUID == info.sop_uid
        assert [elem.tag for elem in ds] == [elem.tag for elem in alone]
        assert [elem.value for elem in ds] == [elem.value for elem in alone]


def test_the_frame_maps_not_remembered_are_fetched_in_one_query(pacs: Context) -> None:
    infos = _stored(pacs)
    expected = [pacs.archive.frame_map(info) for info in infos]
    reader = pacs.archive._frames
    reader._maps.clear()
    statements: list[str] = []
    engine = pacs.database.engine

    def listener(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        found = reader.frame_maps(infos)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert found == expected
    assert len([sql for sql in statements if "frame_map" in sql]) == 1


def test_an_object_indexed_without_a_frame_map_is_walked_among_the_others(pacs: Context) -> None:
    infos = _stored(pacs)
    expected = [pacs.archive.frame_map(info) for info in infos]
    with pacs.database.write() as session:
        session.execute(
            update(Instance).where(Instance.blob_id == infos[1].ref.blob_id).values(frame_map=None)
        )
    pacs.archive._frames._maps.clear()
    assert pacs.archive._frames.frame_maps(infos) == expected


def test_a_missing_blob_among_many_is_not_found(pacs: Context) -> None:
    infos = _stored(pacs)
    pacs.archive._frames.frame_maps(infos)
    pacs.archive._blobs.path_of(infos[2].ref.blob_id).unlink()
    with pytest.raises(NotFoundError):
        list(pacs.archive.data_sets(infos))
