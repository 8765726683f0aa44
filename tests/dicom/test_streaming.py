"""Large objects are streamed: storing and reading one never holds it whole in memory."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from pacs.core.config import Settings
from tests.conftest import REPO

FRAME = 512 * 512 * 2
FRAMES = 1024  # 512 MiB of pixel data

MEASURE = """
import hashlib, sys
from pathlib import Path
from pacs.core.config import load_settings
from pacs.core.context import open_pacs

pacs = open_pacs(load_settings(Path(sys.argv[1]), {}))
result = pacs.archive.store(Path(sys.argv[2]))
digest = hashlib.sha256()
with pacs.archive.open(result.sop_uid) as stream:
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
# VmHWM is this process's own peak; ru_maxrss would include the memory of the pytest
# process it was spawned from, which Linux folds in at exec.
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(digest.hexdigest(), peak_kib // 1024)
"""


def _write_large_object(path: Path) -> str:
    """Write a multi-frame object without holding its pixel data; return the file's SHA-256."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "LARGE^OBJECT", "BIG1", "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, FRAMES
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.save_as(path, enforce_file_format=True)
    frame = bytes(range(256)) * (FRAME // 256)
    with open(path, "ab") as out:
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, FRAME * FRAMES))
        for _ in range(FRAMES):
            out.write(frame)
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_half_gigabyte_object_round_trips_in_flat_memory(settings: Settings, tmp_path: Path) -> None:
    big = tmp_path / "big.dcm"
    expected = _write_large_object(big)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(settings.data_dir), str(big)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    digest, peak_mib = result.stdout.split()
    assert digest == expected
    assert int(peak_mib) < 200, f"peak RSS {peak_mib} MiB while streaming a 512 MiB object"
