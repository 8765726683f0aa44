"""Objects of the at-rest ingest tests: synthetic images with a known pixel pattern, and scans for their PHI.

Needles are searched in the bytes that end up in files and on block devices, never through the archive.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

PATIENT_NAME = "ZEPHYRINE^QUOKKA"
PATIENT_ID = "ZQ-4471-AT-REST"
FRAME_BYTES = 512 * 512 * 2  # one 512x512 frame of 16-bit pixels
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
MIB = 1 << 20


# -- objects ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentObject:
    """A DICOM file written for a push, and what identifies its content."""

    path: Path
    sop_uid: str
    study_uid: str
    size: int
    dataset_sha256: str  # of everything after the File Meta Information, as a C-STORE carries it


def new_pixel_pattern() -> bytes:
    """16 random bytes: pixel data made of them repeated cannot occur anywhere by chance."""
    return secrets.token_bytes(16)


def _meta_end(header: bytes) -> int:
    """Offset of the first dataset byte of a Part 10 file (after preamble, DICM and group 0002)."""
    assert header[128:132] == b"DICM", "not a DICOM Part 10 file"
    tag, vr, _, group_length = struct.unpack_from("<I2sHI", header, 132)
    assert tag == 0x00000002 and vr == b"UL", "File Meta Information must start with its group length"
    return 132 + 12 + int(group_length)


def write_object(
    path: Path,
    *,
    frames: int,
    pattern: bytes,
    patient_name: str = PATIENT_NAME,
    study_uid: str | None = None,
) -> SentObject:
    """Write a US multi-frame object (explicit VR little endian) whose pixel data repeat `pattern`.

    The pixel data are streamed to the file frame by frame, so even a 2 GB object is written
    without holding it in memory.
    """
    assert FRAME_BYTES % len(pattern) == 0
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = patient_name, PATIENT_ID, "US"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260115", "101500", "ACC-ZQ-1"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    header = path.read_bytes()
    digest = hashlib.sha256(header[_meta_end(header) :])
    frame = pattern * (FRAME_BYTES // len(pattern))
    with open(path, "ab") as out:
        element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, FRAME_BYTES * frames)
        out.write(element)
        digest.update(element)
        for _ in range(frames):
            out.write(frame)
            digest.update(frame)
    return SentObject(path, ds.SOPInstanceUID, ds.StudyInstanceUID, path.stat().st_size, digest.hexdigest())


def dataset_sha256(path: Path) -> str:
    """SHA-256 of a Part 10 file's dataset (everything after its File Meta Information)."""
    with open(path, "rb") as source:
        header = source.read(64 * 1024)
        digest = hashlib.sha256(header[_meta_end(header) :])
        while chunk := source.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def phi_needles(pattern: bytes, patient_name: str = PATIENT_NAME) -> dict[str, bytes]:
    """What must never be found at rest, by a readable label: the name's parts in ASCII and UTF-16
    (upper, lower and title case, so a normalised copy in an index is caught too) and the pixel pattern.
    """
    needles = {"pixel pattern": pattern}
    for word in re.split(r"[\^ =]+", patient_name):
        for variant in {word.upper(), word.lower(), word.title()}:
            needles[f"{variant!r} (ascii)"] = variant.encode("ascii")
            needles[f"{variant!r} (utf-16-le)"] = variant.encode("utf-16-le")
    return needles


def find_needles(path: Path, needles: Mapping[str, bytes], *, piece: int = 64 * MIB) -> dict[str, int]:
    """The first offset of each needle found in the file at `path`, read in pieces of `piece` bytes.

    Consecutive pieces overlap by the longest needle, so nothing is missed at a boundary.
    """
    overlap = max(map(len, needles.values())) - 1
    found: dict[str, int] = {}
    with open(path, "rb") as source:
        offset, tail = 0, b""
        while block := source.read(piece):
            window = tail + block
            base = offset - len(tail)
            for label, needle in needles.items():
                if label not in found and (at := window.find(needle)) >= 0:
                    found[label] = base + at
            offset += len(block)
            tail = window[-overlap:] if overlap else b""
    return found


def files_holding(root: Path, needles: Mapping[str, bytes]) -> dict[str, list[str]]:
    """Every regular file under `root` that contains one of the needles, with the labels it contains."""
    holding: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        found = find_needles(path, needles)
        if found:
            holding[str(path.relative_to(root))] = sorted(found)
    return holding
