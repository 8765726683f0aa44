"""Large images for the frame transfer tests and ``bench/web_viewer.py``, written with pydicom.

:func:`radiograph` paints a chest-like projection (soft tissue, two lungs, ribs) with the
noise of a real detector, which is what limits lossless compression; :func:`write_image`
stores any 2-D array (8/16-bit, signed or not) or RGB array as a DICOM file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
CR_SPACING_MM = 0.143  # a 3000-pixel detector spans 43 cm


def radiograph(rows: int, columns: int, seed: int = 0, *, noise: float = 12.0) -> np.ndarray:
    """A float32 chest radiograph of about 0..3300 (12 bits) with Gaussian noise of `noise` levels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    y, x = y / rows, x / columns
    image = 300 + 2500 * np.exp(-((x - 0.5) ** 2 / 0.08 + (y - 0.55) ** 2 / 0.15))
    for centre in (0.32, 0.68):
        image -= 1200 * ((((x - centre) / 0.14) ** 2 + ((y - 0.5) / 0.3) ** 2) < 1)
    for rib in range(10):
        image += 500 * (np.abs(y - (0.25 + rib * 0.05) - 0.05 * np.sin(6 * x)) < 0.006)
    return (image + rng.normal(0, noise, image.shape)).astype(np.float32)


def write_image(
    path: Path,
    pixels: np.ndarray,
    *,
    patient: tuple[str, str] = ("RAYS^WILHELMINA", "PID-XR-1895"),
    study_uid: str | None = None,
    modality: str = "CR",
    series_number: int = 1,
) -> Path:
    """`pixels` (rows x columns, or rows x columns x 3 for RGB) as an uncompressed DICOM file at `path`."""
    colour = pixels.ndim == 3
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage if colour else CR_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = patient
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate, ds.AccessionNumber, ds.StudyID = "20250301", "XR0001", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, series_number, 1
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelSpacing = [CR_SPACING_MM, CR_SPACING_MM]
    ds.PixelData = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder("<"))).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def cr_pixels(rows: int = 3000, columns: int = 3000, seed: int = 0) -> np.ndarray:
    """A CR's stored values: :func:`radiograph` as 16-bit unsigned samples with 12 bits used."""
    return radiograph(rows, columns, seed).clip(0, 4095).astype(np.uint16)
