"""The modules every generated instance shares, the image plane and pixel modules, writing Part-10 files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from tests.data.make_series.checks import Subject, check_uid, fmt_ds

#: Fixed demographics and study details shared by every generated series.
PATIENT_BIRTH_DATE = "19700101"
PATIENT_SEX = "O"
STUDY_TIME = "093000"
STUDY_ID = "1"
REFERRING_PHYSICIAN = "SYNTHETIC^REFERRER"
MANUFACTURER = "SYNTHETIC"
#: ImplementationVersionName is SH, so at most 16 characters.
IMPLEMENTATION_VERSION_NAME = f"PYDICOM {pydicom.__version__}"[:16]
_AXIAL_ORIENTATION = ["1", "0", "0", "0", "1", "0"]


@dataclass(frozen=True)
class SeriesKind:
    """What a generator writes: SOP class, modality, series number, descriptions and body part."""

    sop_class_uid: UID
    modality: str
    series_number: int
    study_description: str
    series_description: str
    body_part: str


@dataclass(frozen=True)
class AxialVolume:
    """The geometry and sample format of an axial volume: field of view, slice thickness, bits."""

    fov_mm: float
    thickness_mm: float
    bits_stored: int
    signed: bool


def set_attributes(ds: Dataset, attributes: dict[str, Any]) -> None:
    """Set every (keyword, value) of `attributes` on `ds`."""
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)


def _file_meta(sop_class_uid: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _study_and_series(kind: SeriesKind, subject: Subject, study_uid: UID, series_uid: UID) -> dict[str, Any]:
    """The General Study and General Series modules."""
    return {
        "StudyDate": subject.study_date,
        "StudyTime": STUDY_TIME,
        "AccessionNumber": subject.accession,
        "ReferringPhysicianName": REFERRING_PHYSICIAN,
        "StudyDescription": kind.study_description,
        "StudyInstanceUID": study_uid,
        "StudyID": STUDY_ID,
        "SeriesDate": subject.study_date,
        "SeriesTime": STUDY_TIME,
        "Modality": kind.modality,
        "SeriesDescription": kind.series_description,
        "BodyPartExamined": kind.body_part,
        "SeriesInstanceUID": series_uid,
        "SeriesNumber": kind.series_number,
    }


def _common_modules(kind: SeriesKind, subject: Subject) -> dict[str, Any]:
    """SOP Common, General Equipment, Patient and General Image / Acquisition."""
    day = subject.study_date
    return {
        "SpecificCharacterSet": "ISO_IR 192",
        "SOPClassUID": kind.sop_class_uid,
        "InstanceCreationDate": day,
        "InstanceCreationTime": STUDY_TIME,
        "Manufacturer": MANUFACTURER,
        "ManufacturerModelName": "make_series",
        "StationName": "SYNTH01",
        "SoftwareVersions": IMPLEMENTATION_VERSION_NAME,
        "PatientName": subject.patient_name,
        "PatientID": subject.patient_id,
        "PatientBirthDate": PATIENT_BIRTH_DATE,
        "PatientSex": PATIENT_SEX,
        "ContentDate": day,
        "ContentTime": STUDY_TIME,
        "AcquisitionDate": day,
        "AcquisitionTime": STUDY_TIME,
        "AcquisitionNumber": 1,
    }


def base_dataset(kind: SeriesKind, subject: Subject) -> Dataset:
    """Return a dataset with the modules shared by every generated instance of `kind`.

    The Study and Series Instance UIDs of `subject` are checked (or generated) first. The
    dataset has its File Meta Information set, but its (0008,0018) *SOP Instance UID* is
    left for :func:`write_instance`. The study date is also the series, content and
    acquisition date.
    """
    study_uid = check_uid("study_uid", subject.study_uid)
    series_uid = check_uid("series_uid", subject.series_uid)
    ds = Dataset()
    ds.file_meta = _file_meta(kind.sop_class_uid)
    set_attributes(ds, _common_modules(kind, subject))
    set_attributes(ds, _study_and_series(kind, subject, study_uid, series_uid))
    return ds


def set_pixel_module(
    ds: Dataset, rows: int, columns: int, *, bits_allocated: int, bits_stored: int, signed: bool
) -> None:
    """Set the single-sample ``MONOCHROME2`` Image Pixel module attributes on `ds`.

    *High Bit* is derived from `bits_stored`; `signed` means two's complement pixels
    (*Pixel Representation* 1). Also adds an empty (7FE0,0010) *Pixel Data* element with
    an explicit VR (``OB`` for 8-bit, ``OW`` otherwise) whose value is replaced for each
    instance.
    """
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    vr = "OB" if bits_allocated == 8 else "OW"
    ds["PixelData"] = DataElement(0x7FE00010, vr, b"")


def set_axial_plane(
    ds: Dataset, rows: int, columns: int, *, fov_mm: float, thickness_mm: float
) -> tuple[float, float]:
    """Set the slice-invariant Image Plane attributes for axial slices of square pixels.

    The field of view `fov_mm` spans the columns; `thickness_mm` is also the spacing
    between slices. Returns the patient x and y coordinates, in mm, of the centre of the
    first (top left) pixel, for (0020,0032) *Image Position (Patient)*.
    """
    spacing = fov_mm / columns
    ds.PixelSpacing = [fmt_ds(spacing), fmt_ds(spacing)]
    ds.SliceThickness = fmt_ds(thickness_mm)
    ds.SpacingBetweenSlices = fmt_ds(thickness_mm)
    ds.ImageOrientationPatient = _AXIAL_ORIENTATION
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.FrameOfReferenceUID = generate_uid()
    x0 = -(columns - 1) / 2 * spacing
    y0 = -(rows - 1) / 2 * spacing
    return x0, y0


def output_dir(outdir: Path) -> Path:
    """`outdir` as a Path, created (with its parents) if missing."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return outdir


def write_instance(ds: Dataset, path: Path) -> Path:
    """Give `ds` a fresh SOP Instance UID (also in the file meta) and write it to `path` as a Part-10 file."""
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_volume(
    ds: Dataset,
    outdir: Path,
    prefix: str,
    slices: Iterable[bytes],
    *,
    x0: float,
    y0: float,
    thickness_mm: float,
    count: int,
) -> list[Path]:
    """Write one single-frame instance per slice of an axial volume, in instance order.

    `slices` are the little endian pixel data of each slice; files are named
    ``{prefix}000001.dcm``, ... Slices run head to foot: instance 1 is the most superior,
    and (0020,0032) *Image Position (Patient)* steps by ``-thickness_mm`` in z from the
    first pixel at (`x0`, `y0`), the `count` slices centred on z = 0. `ds` is modified
    in place for each slice.
    """
    z_top = (count - 1) / 2 * thickness_mm
    x_text, y_text = fmt_ds(x0), fmt_ds(y0)
    pixel_elem = ds["PixelData"]
    paths: list[Path] = []
    for index, pixels in enumerate(slices):
        z = fmt_ds(z_top - index * thickness_mm)
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [x_text, y_text, z]
        ds.SliceLocation = z
        pixel_elem.value = pixels
        path = outdir / f"{prefix}{index + 1:06d}.dcm"
        paths.append(write_instance(ds, path))
    return paths


def write_axial_series(
    outdir: Path,
    kind: SeriesKind,
    attributes: dict[str, Any],
    volume: AxialVolume,
    subject: Subject,
    shape: tuple[int, int, int],
    pixels: Iterable[bytes],
) -> list[Path]:
    """Write `pixels` as an axial series of `kind`, `shape` (slices, rows, columns), 16 bits allocated.

    `attributes` are the modality's own (set after the shared modules); files are named
    after the modality and written in instance order to `outdir`, created if missing.
    """
    count, rows, columns = shape
    ds = base_dataset(kind, subject)
    set_attributes(ds, attributes)
    x0, y0 = set_axial_plane(ds, rows, columns, fov_mm=volume.fov_mm, thickness_mm=volume.thickness_mm)
    set_pixel_module(
        ds, rows, columns, bits_allocated=16, bits_stored=volume.bits_stored, signed=volume.signed
    )
    return write_volume(
        ds,
        output_dir(outdir),
        kind.modality,
        pixels,
        x0=x0,
        y0=y0,
        thickness_mm=volume.thickness_mm,
        count=count,
    )
