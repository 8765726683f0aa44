"""The streaming walker: structure, header and completeness of an object fed in pieces."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from storage.header import MAX_INFLATED_PREFIX, HeaderError, InstanceHeader, sop_instance_uid
from storage.walker import Part10Walker


def _walk(data: bytes, *, step: int = 1 << 20, max_header: int = 1 << 20) -> InstanceHeader:
    walker = Part10Walker(max_header=max_header)
    for start in range(0, len(data), step):
        walker.feed(data[start : start + step])
    return walker.close().header()


def _encode(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(
        out, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=True
    )
    return out.getvalue()


def _ct(rows: int = 4, columns: int = 4, pixel_bytes: int | None = None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "WALKER^TEXAS"
    ds.PatientID = "W-1"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x01\x02" * (rows * columns) if pixel_bytes is None else b"\x00" * pixel_bytes
    return ds


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_every_sample_reads_the_same_header_however_it_is_cut(sample_files: list[Path], step: int) -> None:
    for path in sample_files:
        ds = pydicom.dcmread(path)
        header = _walk(path.read_bytes(), step=step)
        assert header.sop_uid == ds.SOPInstanceUID, path.name
        assert header.patient_name == str(ds.get("PatientName", "")), path.name
        assert header.rows == ds.get("Rows"), path.name
        assert not header.pixel_data_short, path.name


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_cut_inside_the_meta_or_an_element_is_found_truncated(syntax: str) -> None:
    ds = _ct()
    data = _encode(ds, syntax)
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    pixels = len(ds.PixelData)
    inside = [*range(133, meta_end, 5), *range(len(data) - pixels - 7, len(data), 3)]
    for cut in inside:
        with pytest.raises(HeaderError, match="truncated"):
            _walk(data[:cut], step=5)


def test_sequences_nested_too_deep_are_refused_with_a_reason() -> None:
    ds = _ct()
    inner = Dataset()
    for _ in range(40):
        outer = Dataset()
        outer.ReferencedImageSequence = Sequence([inner])
        inner = outer
    ds.ReferencedImageSequence = inner.ReferencedImageSequence
    with pytest.raises(HeaderError, match="nested more than"):
        _walk(_encode(ds))


def test_an_empty_data_set_is_refused() -> None:
    data = _encode(_ct())
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    with pytest.raises(HeaderError, match="empty"):
        _walk(data[:meta_end])


def test_a_header_that_does_not_end_within_the_limit_is_refused() -> None:
    ds = _ct()
    ds.add_new(0x00191010, "OB", b"\x00" * 20_000)  # a private element before group 0029
    with pytest.raises(HeaderError, match="does not end within 4096 bytes"):
        _walk(_encode(ds), max_header=4096)
    assert _walk(_encode(ds), max_header=1 << 20).sop_uid == ds.SOPInstanceUID


def test_pixel_data_shorter_than_declared_is_flagged() -> None:
    assert _walk(_encode(_ct(pixel_bytes=10))).pixel_data_short
    assert not _walk(_encode(_ct())).pixel_data_short


def test_a_file_without_dicm_is_not_dicom() -> None:
    with pytest.raises(HeaderError, match="not a DICOM Part 10 file"):
        _walk(b"\0" * 200)
    with pytest.raises(HeaderError, match="not a DICOM Part 10 file"):
        _walk(b"short")


def test_reading_the_uid_of_a_deflate_bomb_inflates_no_more_than_the_bound() -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    huge = 256 << 20  # an element before (0008,0018) of 256 MiB of zeros, ~256 KiB deflated
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(struct.pack("<HH2sHI", 0x0008, 0x0010, b"UN", 0, huge))
    body += b"".join(compressor.compress(bytes(1 << 20)) for _ in range(huge >> 20)) + compressor.flush()
    meta = out.getvalue()
    meta = meta[: 132 + 12 + struct.unpack("<I", meta[140:144])[0]]  # preamble, DICM, the meta group
    prefix = meta + body
    tracemalloc.start()
    try:
        with pytest.raises(HeaderError):
            sop_instance_uid(prefix, "1.2.840.10008.1.2.1.99")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_INFLATED_PREFIX + len(prefix)


def _deflated_with_zeros(comment_length: int, zeros: int) -> bytes:
    """A deflated object ending in `zeros` bytes of Pixel Data: ~1,000:1, so most input yields a full step."""
    ds = _ct()
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", "1.2.3.5", "1.2.3.6"
    del ds.PixelData
    ds.PatientComments = "x" * comment_length
    written = _encode(ds, DeflatedExplicitVRLittleEndian)
    meta_end = 132 + 12 + struct.unpack_from("<I", written, 140)[0]
    plain = DicomBytesIO()
    plain.is_little_endian, plain.is_implicit_VR = True, False
    write_dataset(plain, ds)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflater.compress(plain.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", zeros))
    return written[:meta_end] + body + deflater.compress(bytes(zeros)) + deflater.flush()


@pytest.mark.parametrize("comment_length", range(0, 24, 2))
def test_a_deflated_data_set_is_inflated_to_its_end_wherever_its_last_input_falls(
    comment_length: int,
) -> None:
    header = _walk(_deflated_with_zeros(comment_length, 8 << 20))
    assert header.sop_uid == "1.2.3.4"
    assert not header.pixel_data_short
