"""The frame map recorded at ingest, and frames read by decrypting only the chunks that hold them.

Objects are made with pydicom (native, 1-bit, deflated; encapsulated with a Basic Offset
Table, an Extended Offset Table, or none with one fragment a frame or several), stored
through the archive's own store path, and each frame that ``Archive.frame_bytes`` returns
is compared with the bytes the object was made of.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, itemize_fragment
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    RLELossless,
    generate_uid,
)
from sqlalchemy import select

from pacs.core.context import Context
from storage import reindex
from storage.crypto import CHUNK_SIZE, IntegrityError
from storage.framemap import FrameMapError, NoSuchFrameError
from storage.models import Instance
from storage.records import InstanceInfo
from tests.storage.test_ingest_crash import lose_index_rows

ROWS, COLUMNS = 512, 512
NATIVE_FRAME = ROWS * COLUMNS * 2


def dataset(frames: int, syntax: str = ExplicitVRLittleEndian, bits: int = 16) -> Dataset:
    """A multi-frame grayscale object of `frames` frames, without Pixel Data yet."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "FM-1", "FRAME^MAP", "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.NumberOfFrames = ROWS, COLUMNS, 1, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 100, 400
    return ds


def store(pacs: Context, ds: Dataset) -> InstanceInfo:
    """Store `ds` through the archive's store path; its index entry."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    incoming = pacs.archive.receive()
    incoming.write(buffer.getvalue())
    incoming.finish()
    return pacs.archive.instance(ds.SOPInstanceUID)


def native_frames(count: int) -> list[bytes]:
    """`count` 16-bit frames, each of its own values."""
    return [np.full(ROWS * COLUMNS, n * 7 + 1, dtype="<u2").tobytes() for n in range(count)]


def encapsulated(ds: Dataset, pixel_data: bytes) -> Dataset:
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def fake_jpeg(n: int, size: int) -> bytes:
    """A byte string that starts as a JPEG stream does, distinct for each `n`."""
    return b"\xff\xd8\xff\xe0" + bytes([n % 251]) * (size - 4)


def test_native_frames_are_read_by_arithmetic_from_the_recorded_offset(pacs: Context) -> None:
    frames = native_frames(7)  # 3.5 MiB: the frames span several chunks
    ds = dataset(7)
    ds.PixelData = b"".join(frames)
    info = store(pacs, ds)
    for number in (1, 4, 7):
        assert pacs.archive.frame_bytes(info, number) == frames[number - 1]
    with pytest.raises(NoSuchFrameError, match="frame 8 does not exist"):
        pacs.archive.frame_bytes(info, 8)
    header = pacs.archive.dataset_without_pixels(info)
    assert "PixelData" not in header
    assert (header.NumberOfFrames, header.WindowWidth, header.PatientName) == (7, 400, "FRAME^MAP")
    assert header.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_one_bit_frames_that_do_not_start_on_a_byte_come_out_shifted_to_their_first_bit(
    pacs: Context,
) -> None:
    bits = np.random.default_rng(1).integers(0, 2, size=(3, 5, 5), dtype=np.uint8)
    ds = dataset(3, bits=1)
    ds.Rows = ds.Columns = 5
    ds.PixelData = np.packbits(bits.ravel(), bitorder="little").tobytes()
    info = store(pacs, ds)
    for number in (1, 2, 3):
        got = np.unpackbits(
            np.frombuffer(pacs.archive.frame_bytes(info, number), np.uint8), bitorder="little"
        )
        assert got[:25].tolist() == bits[number - 1].ravel().tolist()


def test_encapsulated_frames_follow_the_basic_offset_table_over_several_fragments(pacs: Context) -> None:
    frames = [fake_jpeg(n, 300_000 + 6 * n) for n in range(5)]
    ds = encapsulated(dataset(5, RLELossless), encapsulate(frames, fragments_per_frame=3, has_bot=True))
    info = store(pacs, ds)
    assert [pacs.archive.frame_bytes(info, n) for n in (1, 3, 5)] == [frames[0], frames[2], frames[4]]


def test_encapsulated_frames_follow_the_extended_offset_table(pacs: Context) -> None:
    frames = [bytes([n]) * 200_000 for n in range(4)]  # no start markers: only the table tells
    items, offsets, at = [itemize_fragment(b"")], [], 0
    for frame in frames:
        offsets.append(at)
        for half in (frame[:120_000], frame[120_000:]):
            items.append(itemize_fragment(half))
            at += len(items[-1])
    ds = encapsulated(dataset(4, RLELossless), b"".join(items))
    ds.ExtendedOffsetTable = struct.pack("<4Q", *offsets)
    ds.ExtendedOffsetTableLengths = struct.pack("<4Q", *(len(f) for f in frames))
    info = store(pacs, ds)
    assert [pacs.archive.frame_bytes(info, n) for n in (1, 2, 4)] == [frames[0], frames[1], frames[3]]
    assert "ExtendedOffsetTable" in pacs.archive.dataset_without_pixels(info)


def test_without_an_offset_table_one_fragment_is_one_frame_when_they_are_as_many(pacs: Context) -> None:
    frames = [bytes([n + 1]) * (10_000 + 2 * n) for n in range(6)]  # even: fragments are padded
    info = store(pacs, encapsulated(dataset(6, RLELossless), encapsulate(frames, has_bot=False)))
    assert [pacs.archive.frame_bytes(info, n) for n in (1, 6)] == [frames[0], frames[5]]


def test_without_an_offset_table_fragments_are_grouped_by_the_jpeg_start_of_each_frame(
    pacs: Context,
) -> None:
    frames = [fake_jpeg(n, 50_000 + 22 * n) for n in range(4)]
    pixel_data = encapsulate(frames, fragments_per_frame=3, has_bot=False)
    info = store(pacs, encapsulated(dataset(4, JPEGBaseline8Bit), pixel_data))
    assert [pacs.archive.frame_bytes(info, n) for n in (1, 2, 4)] == [frames[0], frames[1], frames[3]]


def test_fragments_that_cannot_be_told_apart_as_frames_are_refused_with_a_reason(pacs: Context) -> None:
    fragments = [bytes([n]) * 1000 for n in range(5)]  # 5 fragments, 2 frames, no markers, no table
    pixel_data = b"".join([itemize_fragment(b""), *(itemize_fragment(f) for f in fragments)])
    info = store(pacs, encapsulated(dataset(2, RLELossless), pixel_data))
    with pytest.raises(FrameMapError, match="cannot be told apart"):
        pacs.archive.frame_bytes(info, 1)


def test_a_deflated_object_gives_its_frames_and_header_from_the_inflated_data_set(pacs: Context) -> None:
    frames = native_frames(3)
    ds = dataset(3, DeflatedExplicitVRLittleEndian)
    ds.PixelData = b"".join(frames)
    info = store(pacs, ds)
    assert [pacs.archive.frame_bytes(info, n) for n in (1, 3)] == [frames[0], frames[2]]
    header = pacs.archive.dataset_without_pixels(info)
    assert "PixelData" not in header and header.Rows == ROWS
    assert header.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian


def stored_frames(pacs: Context, count: int) -> tuple[InstanceInfo, list[bytes]]:
    """A native object of `count` frames, stored; its index entry and its frames."""
    frames = native_frames(count)
    ds = dataset(count)
    ds.PixelData = b"".join(frames)
    return store(pacs, ds), frames


def test_a_frame_is_read_from_its_own_chunks_each_still_authenticated(pacs: Context) -> None:
    info, frames = stored_frames(pacs, 12)  # 6 MiB: 7 chunks
    plaintext = b"".join(pacs.archive.read_instance(info))
    chunk = plaintext.index(frames[8]) // CHUNK_SIZE  # the chunk where frame 9 starts
    path = pacs.archive.blob_file(info.ref.blob_id)
    blob = bytearray(path.read_bytes())
    stream_start = len(blob) - len(plaintext) - 7 * 16  # the header and key slot before chunk 0
    blob[stream_start + chunk * (CHUNK_SIZE + 16) + 100] ^= 0x01
    path.write_bytes(blob)
    assert pacs.archive.frame_bytes(info, 1) == frames[0]  # its chunk is untouched, and nothing more is read
    with pytest.raises(IntegrityError, match=f"chunk {chunk} failed authentication"):
        pacs.archive.frame_bytes(info, 9)


def test_a_truncated_blob_fails_whichever_frame_is_asked(pacs: Context) -> None:
    info, _ = stored_frames(pacs, 12)
    path = pacs.archive.blob_file(info.ref.blob_id)
    path.write_bytes(path.read_bytes()[: -CHUNK_SIZE - 16])  # the last chunk gone
    for number in (1, 12):
        with pytest.raises(IntegrityError, match="truncated"):
            pacs.archive.frame_bytes(info, number)


def packed_map(pacs: Context, sop_uid: str) -> bytes | None:
    """The frame map the index holds for `sop_uid` (packed), if any."""
    with pacs.database.read() as session:
        return session.scalar(select(Instance.frame_map).where(Instance.sop_uid == sop_uid))


def test_reindexing_rebuilds_the_frame_map_from_the_blob(pacs: Context) -> None:
    info, frames = stored_frames(pacs, 3)
    recorded = packed_map(pacs, info.sop_uid)
    assert recorded is not None
    lose_index_rows(pacs, [info.sop_uid])
    assert [r.sop_uid for r in reindex.sweep(pacs.archive, remove=False, alone=True).reindexed] == [
        info.sop_uid
    ]
    assert packed_map(pacs, info.sop_uid) == recorded
    assert pacs.archive.frame_bytes(pacs.archive.instance(info.sop_uid), 3) == frames[2]
