"""Generate realistic *synthetic* DICOM Part-10 files for tests and benchmarks.

This module owns the creation of fake-but-valid imaging series: a CT
volume, an MR volume and an ultrasound multi-frame cine loop. Every file is
a proper DICOM Part-10 file (128-byte preamble, ``DICM`` prefix, group
``0x0002`` File Meta Information) encoded with Explicit VR Little Endian,
with the Patient, General Study, General Series, Frame of Reference (CT/MR),
General Equipment, General Image, Image Plane (CT/MR), Image Pixel,
modality-specific and SOP Common attributes filled in. Pixel data are
simple procedural phantoms computed with vectorised :mod:`numpy`, so they
look like anatomy, differ from slice to slice (or frame to frame) and are
deterministic for a given ``seed``. UIDs are not deterministic: unless
supplied, each call generates fresh ones with
:func:`pydicom.uid.generate_uid`.

No real patient data is involved. Output file names are neutral
(``CT000001.dcm``, ``MR000001.dcm``, ``US000001.dcm``) and never contain
patient names, identifiers or UIDs. Files with the same name in *outdir*
are overwritten, so write different series to different directories.

It can also be used from the command line::

    python tests/data/make_series.py ct OUTDIR --slices 500
    python tests/data/make_series.py us OUTDIR --frames 60 --patient-id X1
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    RE_VALID_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

__all__ = ["main", "make_ct_series", "make_mr_series", "make_us_cine"]

#: Fixed demographics and study details shared by every generated series.
PATIENT_BIRTH_DATE = "19700101"
PATIENT_SEX = "O"
STUDY_TIME = "093000"
STUDY_ID = "1"
REFERRING_PHYSICIAN = "SYNTHETIC^REFERRER"
MANUFACTURER = "SYNTHETIC"
#: ImplementationVersionName is SH, so at most 16 characters.
IMPLEMENTATION_VERSION_NAME = f"PYDICOM {pydicom.__version__}"[:16]

#: CT rescale parameters: HU = stored * slope + intercept.
CT_RESCALE_SLOPE = 1
CT_RESCALE_INTERCEPT = -1024

#: Vertical centre of the CT body outline, in normalised image units.
_BODY_CY = 0.02
_AXIAL_ORIENTATION = ["1", "0", "0", "0", "1", "0"]
_MAX_DIMENSION = 4096
_MAX_COUNT = 100_000
#: VR length limits for the free-text identifying parameters.
_TEXT_LIMITS = {"patient_name": 64, "patient_id": 64, "accession": 16}


# ---------------------------------------------------------------------------
# Validation and formatting helpers
# ---------------------------------------------------------------------------


def _fmt_ds(value: float) -> str:
    """Return `value` formatted as a valid Decimal String (DS).

    Parameters
    ----------
    value : float
        The number to format.

    Returns
    -------
    str
        At most 16 characters: ten significant digits, which is exact
        for typical spacings such as ``"0.68359375"`` while dropping the
        noise of floating point arithmetic (``0.1 + 0.2`` gives ``"0.3"``).
    """
    text = f"{value:.10g}"
    return "0" if text == "-0" else text


def _check_positive(name: str, value: int, maximum: int) -> None:
    """Raise if `value` is not an ``int`` in the range ``[1, maximum]``.

    Parameters
    ----------
    name : str
        The parameter name, used in the error message.
    value : int
        The value to check.
    maximum : int
        The largest allowed value.

    Raises
    ------
    TypeError
        If `value` is not an ``int``.
    ValueError
        If `value` is not in ``[1, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int, not {type(value).__name__}")
    if not 1 <= value <= maximum:
        raise ValueError(f"'{name}' must be between 1 and {maximum}, got {value}")


def _check_uid(name: str, value: str | None) -> UID:
    """Return `value` as a :class:`~pydicom.uid.UID`, generating one if ``None``.

    Parameters
    ----------
    name : str
        The parameter name, used in the error message.
    value : str | None
        A caller-supplied UID, or ``None`` to generate a fresh one.

    Returns
    -------
    pydicom.uid.UID
        The validated or newly generated UID.

    Raises
    ------
    ValueError
        If `value` is not a valid UID (digits and dots, at most 64 chars).
    """
    if value is None:
        return generate_uid()
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"'{name}' is not a valid UID: {value!r}")
    if re.fullmatch(RE_VALID_UID, value) is None:
        raise ValueError(f"'{name}' is not a valid UID: {value!r}")
    return UID(value)


def _check_text(name: str, value: str) -> None:
    """Raise if a free-text identifying value is unsuitable for its VR.

    Parameters
    ----------
    name : str
        The parameter name; one of the keys of ``_TEXT_LIMITS``.
    value : str
        The value to check.

    Raises
    ------
    ValueError
        If `value` is empty, too long, contains a backslash (the DICOM
        multi-value delimiter) or contains control characters.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{name}' must be a non-empty str")
    if len(value) > _TEXT_LIMITS[name]:
        raise ValueError(f"'{name}' is longer than {_TEXT_LIMITS[name]} characters")
    if "\\" in value or any(ord(ch) < 0x20 for ch in value):
        raise ValueError(f"'{name}' contains a backslash or control character")


def _check_common(
    *,
    patient_name: str,
    patient_id: str,
    study_date: str,
    accession: str,
    seed: int,
) -> None:
    """Validate the keyword arguments shared by all the public generators.

    Parameters
    ----------
    patient_name : str
        The (0010,0010) *Patient's Name* value.
    patient_id : str
        The (0010,0020) *Patient ID* value.
    study_date : str
        The (0008,0020) *Study Date*, as ``YYYYMMDD``.
    accession : str
        The (0008,0050) *Accession Number* value.
    seed : int
        The seed for the pixel data random number generator.

    Raises
    ------
    TypeError
        If `seed` is not an ``int``.
    ValueError
        If any value is invalid.
    """
    _check_text("patient_name", patient_name)
    _check_text("patient_id", patient_id)
    _check_text("accession", accession)
    try:
        if len(study_date) != 8:
            raise ValueError
        datetime.strptime(study_date, "%Y%m%d")
    except (TypeError, ValueError):
        raise ValueError(f"'study_date' must be a valid YYYYMMDD date, got {study_date!r}") from None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError("'seed' must be an int")
    if seed < 0:
        raise ValueError("'seed' must be non-negative")


# ---------------------------------------------------------------------------
# Dataset construction helpers
# ---------------------------------------------------------------------------


def _base_dataset(
    sop_class_uid: UID,
    modality: str,
    *,
    patient_name: str,
    patient_id: str,
    study_uid: UID,
    series_uid: UID,
    study_date: str,
    accession: str,
    series_number: int,
    study_description: str,
    series_description: str,
    body_part: str,
) -> Dataset:
    """Return a dataset with the modules shared by every generated instance.

    The returned dataset has its File Meta Information set, but its
    (0008,0018) *SOP Instance UID* is left for :func:`_write_instance`.

    Parameters
    ----------
    sop_class_uid : pydicom.uid.UID
        The SOP Class UID of the instances.
    modality : str
        The (0008,0060) *Modality*, e.g. ``"CT"``.
    patient_name, patient_id : str
        The patient's name and identifier.
    study_uid, series_uid : pydicom.uid.UID
        The Study and Series Instance UIDs.
    study_date : str
        The study date as ``YYYYMMDD``; also used for the series, content
        and acquisition dates.
    accession : str
        The (0008,0050) *Accession Number*.
    series_number : int
        The (0020,0011) *Series Number*.
    study_description, series_description : str
        The study and series descriptions.
    body_part : str
        The (0018,0015) *Body Part Examined*.

    Returns
    -------
    pydicom.dataset.Dataset
        The partially filled dataset.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = meta
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = STUDY_TIME
    # General Study
    ds.StudyDate = study_date
    ds.StudyTime = STUDY_TIME
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = REFERRING_PHYSICIAN
    ds.StudyDescription = study_description
    ds.StudyInstanceUID = study_uid
    ds.StudyID = STUDY_ID
    # General Series
    ds.SeriesDate = study_date
    ds.SeriesTime = STUDY_TIME
    ds.Modality = modality
    ds.SeriesDescription = series_description
    ds.BodyPartExamined = body_part
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    # General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "make_series"
    ds.StationName = "SYNTH01"
    ds.SoftwareVersions = IMPLEMENTATION_VERSION_NAME
    # Patient
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = PATIENT_BIRTH_DATE
    ds.PatientSex = PATIENT_SEX
    # General Image / Acquisition
    ds.ContentDate = study_date
    ds.ContentTime = STUDY_TIME
    ds.AcquisitionDate = study_date
    ds.AcquisitionTime = STUDY_TIME
    ds.AcquisitionNumber = 1
    return ds


def _set_pixel_module(
    ds: Dataset,
    rows: int,
    columns: int,
    *,
    bits_allocated: int,
    bits_stored: int,
    signed: bool,
) -> None:
    """Set the single-sample Image Pixel module attributes on `ds`.

    Also adds an empty (7FE0,0010) *Pixel Data* element with an explicit
    VR (``OB`` for 8-bit, ``OW`` otherwise) whose value is replaced for
    each instance.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The dataset to update in place.
    rows, columns : int
        The image matrix size.
    bits_allocated, bits_stored : int
        The (0028,0100) and (0028,0101) values; *High Bit* is derived.
    signed : bool
        ``True`` for two's complement pixels (*Pixel Representation* 1).
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


def _set_axial_plane(
    ds: Dataset,
    rows: int,
    columns: int,
    *,
    fov_mm: float,
    thickness_mm: float,
) -> tuple[float, float]:
    """Set the slice-invariant Image Plane attributes for axial slices.

    Pixels are square; the field of view spans the columns.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The dataset to update in place.
    rows, columns : int
        The image matrix size.
    fov_mm : float
        The field of view across the columns, in mm.
    thickness_mm : float
        The slice thickness (and spacing between slices), in mm.

    Returns
    -------
    tuple[float, float]
        The patient x and y coordinates, in mm, of the centre of the first
        (top left) pixel, for use in (0020,0032) *Image Position (Patient)*.
    """
    spacing = fov_mm / columns
    ds.PixelSpacing = [_fmt_ds(spacing), _fmt_ds(spacing)]
    ds.SliceThickness = _fmt_ds(thickness_mm)
    ds.SpacingBetweenSlices = _fmt_ds(thickness_mm)
    ds.ImageOrientationPatient = _AXIAL_ORIENTATION
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.FrameOfReferenceUID = generate_uid()
    x0 = -(columns - 1) / 2 * spacing
    y0 = -(rows - 1) / 2 * spacing
    return x0, y0


def _write_instance(ds: Dataset, path: Path) -> Path:
    """Give `ds` a fresh SOP Instance UID and write it as a Part-10 file.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The dataset to write; its SOP Instance UID and the matching
        *Media Storage SOP Instance UID* are replaced in place.
    path : pathlib.Path
        The destination file, overwritten if it exists.

    Returns
    -------
    pathlib.Path
        `path`.
    """
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def _write_volume(
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
    """Write one single-frame instance per slice of an axial volume.

    Slices run head to foot: instance 1 is the most superior, and
    (0020,0032) *Image Position (Patient)* steps by ``-thickness_mm`` in z.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The base dataset, modified in place for each slice.
    outdir : pathlib.Path
        The output directory, which must exist.
    prefix : str
        The neutral file name prefix, e.g. ``"CT"``.
    slices : iterable of bytes
        The little endian pixel data of each slice, in instance order.
    x0, y0 : float
        The patient x and y coordinates of the first pixel, in mm.
    thickness_mm : float
        The distance between slice centres, in mm.
    count : int
        The number of slices; used to centre the volume on z = 0.

    Returns
    -------
    list[pathlib.Path]
        The written files, in instance order.
    """
    z_top = (count - 1) / 2 * thickness_mm
    x_text, y_text = _fmt_ds(x0), _fmt_ds(y0)
    pixel_elem = ds["PixelData"]
    paths: list[Path] = []
    for index, pixels in enumerate(slices):
        z = _fmt_ds(z_top - index * thickness_mm)
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [x_text, y_text, z]
        ds.SliceLocation = z
        pixel_elem.value = pixels
        path = outdir / f"{prefix}{index + 1:06d}.dcm"
        paths.append(_write_instance(ds, path))
    return paths


# ---------------------------------------------------------------------------
# Phantoms
# ---------------------------------------------------------------------------


def _axes(rows: int, columns: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Return normalised pixel-centre coordinates for a square-pixel image.

    Parameters
    ----------
    rows, columns : int
        The image matrix size.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``(u, v)``: 1-D ``float32`` arrays of length `columns` and `rows`.
        ``u`` runs from -1 to 1 across the columns (patient right to
        left); ``v`` uses the same scale down the rows (anterior to
        posterior) and is centred on 0.
    """
    half = columns / 2
    u = (np.arange(columns, dtype=np.float32) + 0.5 - half) / half
    v = (np.arange(rows, dtype=np.float32) + 0.5 - rows / 2) / half
    return u, v


def _window(
    u: NDArray[np.float32],
    v: NDArray[np.float32],
    cx: float,
    cy: float,
    a: float,
    b: float,
) -> tuple[slice, slice]:
    """Return the row and column slices bounding an axis-aligned ellipse.

    Parameters
    ----------
    u, v : numpy.ndarray
        The sorted 1-D column and row coordinates from :func:`_axes`.
    cx, cy : float
        The ellipse centre.
    a, b : float
        The semi-axes along `u` and `v`.

    Returns
    -------
    tuple[slice, slice]
        ``(rows, columns)`` slices of the pixels whose centres may lie
        inside the ellipse; empty if it misses the image.
    """
    c0, c1 = np.searchsorted(u, (cx - a, cx + a), side="right")
    r0, r1 = np.searchsorted(v, (cy - b, cy + b), side="right")
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


def _ellipse(
    u: NDArray[np.float32],
    v: NDArray[np.float32],
    cx: float,
    cy: float,
    a: float,
    b: float,
) -> NDArray[np.bool_]:
    """Return a 2-D mask of the pixels inside an axis-aligned ellipse.

    Parameters
    ----------
    u, v : numpy.ndarray
        1-D column and row coordinates, e.g. from :func:`_axes` or a
        window of them.
    cx, cy : float
        The ellipse centre.
    a, b : float
        The semi-axes along `u` and `v`, both positive.

    Returns
    -------
    numpy.ndarray
        A ``(len(v), len(u))`` boolean mask.
    """
    du = np.square((u - cx) / a)
    dv = np.square((v - cy) / b)
    return (dv[:, None] + du[None, :]) <= 1.0


def _paint_ellipse(
    img: NDArray[np.int16],
    u: NDArray[np.float32],
    v: NDArray[np.float32],
    centre: tuple[float, float],
    axes: tuple[float, float],
    value: int,
) -> None:
    """Set the pixels of `img` inside an axis-aligned ellipse to `value`.

    Only the ellipse's bounding box is evaluated, so small structures are
    cheap to draw.

    Parameters
    ----------
    img : numpy.ndarray
        The ``(len(v), len(u))`` image, modified in place.
    u, v : numpy.ndarray
        The 1-D column and row coordinates from :func:`_axes`.
    centre : tuple[float, float]
        The ellipse centre ``(cx, cy)``.
    axes : tuple[float, float]
        The semi-axes ``(a, b)``; nothing is drawn if either is not
        positive.
    value : int
        The value to draw.
    """
    (cx, cy), (a, b) = centre, axes
    if a <= 0 or b <= 0:
        return
    rows, cols = _window(u, v, cx, cy, a, b)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return
    mask = _ellipse(u[cols], v[rows], cx, cy, a, b)
    np.putmask(img[rows, cols], mask, value)


def _bump(t: float, start: float, stop: float) -> float:
    """Return a smooth 0 to 1 to 0 profile of `t` over ``[start, stop]``.

    Parameters
    ----------
    t : float
        The normalised slice position in ``[0, 1]``.
    start, stop : float
        The interval where the profile is non-zero.

    Returns
    -------
    float
        ``sqrt(sin(pi * s))`` where ``s`` is `t` rescaled to ``[0, 1]``, or
        ``0.0`` outside the interval.
    """
    if not start < t < stop:
        return 0.0
    return math.sqrt(math.sin(math.pi * (t - start) / (stop - start)))


def _ct_slice_hu(
    u: NDArray[np.float32],
    v: NDArray[np.float32],
    rib_phase: tuple[NDArray[np.float32], NDArray[np.float32]],
    t: float,
) -> NDArray[np.int16]:
    """Return one noiseless axial slice of a chest phantom in HU.

    The phantom has air, a body ellipse with a subcutaneous fat layer,
    soft tissue, two lungs, a heart, a descending aorta, a sternum, a
    vertebra with spinal canal, and ribs. The body, lungs, heart and ribs
    grow, shrink and rotate with `t` so every slice differs.

    Parameters
    ----------
    u, v : numpy.ndarray
        The 1-D column and row coordinates from :func:`_axes`.
    rib_phase : tuple[numpy.ndarray, numpy.ndarray]
        ``(cos(12 * theta), sin(12 * theta))`` for the polar angle of each
        pixel about the body centre, precomputed once per series.
    t : float
        The normalised slice position: 0 is the most superior slice.

    Returns
    -------
    numpy.ndarray
        A ``(len(v), len(u))`` ``int16`` array of Hounsfield units.
    """
    img = np.full((v.size, u.size), -1000, dtype=np.int16)
    scale = 0.95 + 0.05 * math.sin(math.pi * t)
    a_body, b_body = 0.88 * scale, 0.62 * scale
    body = (0.0, _BODY_CY)
    _paint_ellipse(img, u, v, body, (a_body, b_body), -100)
    _paint_ellipse(img, u, v, body, (0.93 * a_body, 0.93 * b_body), 40)

    lung = _bump(t, 0.05, 0.95)
    for cx in (-0.40, 0.40):
        _paint_ellipse(img, u, v, (cx, -0.02), (0.30 * lung, 0.42 * lung), -850)
    heart = _bump(t, 0.40, 1.00)
    _paint_ellipse(img, u, v, (0.10, -0.08), (0.26 * heart, 0.20 * heart), 45)
    _paint_ellipse(img, u, v, (0.17, 0.22), (0.06, 0.06), 50)

    # Ribs: an annulus gated by angle; the pattern rotates and switches on
    # and off along z to mimic ribs entering and leaving the slice.
    rows, cols = _window(u, v, *body, 0.90 * a_body, 0.90 * b_body)
    uu, vv = u[cols], v[rows]
    ring = _ellipse(uu, vv, *body, 0.90 * a_body, 0.90 * b_body)
    ring &= ~_ellipse(uu, vv, *body, 0.84 * a_body, 0.84 * b_body)
    phase = 2 * math.pi * 1.5 * t
    threshold = 0.2 + 0.6 * (0.5 + 0.5 * math.cos(2 * math.pi * 8 * t))
    ring_rows, ring_cols = np.nonzero(ring)
    ring_rows += rows.start
    ring_cols += cols.start
    cos12, sin12 = rib_phase
    gate = cos12[ring_rows, ring_cols] * math.cos(phase)
    gate -= sin12[ring_rows, ring_cols] * math.sin(phase)
    on = gate > threshold
    img[ring_rows[on], ring_cols[on]] = 800

    _paint_ellipse(img, u, v, (0.0, -0.55), (0.05, 0.03), 600)
    _paint_ellipse(img, u, v, (0.0, 0.36), (0.12, 0.10), 900)
    _paint_ellipse(img, u, v, (0.0, 0.36), (0.10, 0.08), 250)
    _paint_ellipse(img, u, v, (0.0, 0.51), (0.04, 0.04), 10)
    return img


def _mr_slice(u: NDArray[np.float32], v: NDArray[np.float32], t: float) -> NDArray[np.int16]:
    """Return one noiseless axial slice of a T1-weighted head phantom.

    The phantom has a bright scalp, a dark skull, CSF, grey matter, brighter
    white matter and dark lateral ventricles. The head narrows towards the
    vertex and the ventricles appear only in the middle slices.

    Parameters
    ----------
    u, v : numpy.ndarray
        The 1-D column and row coordinates from :func:`_axes`.
    t : float
        The normalised slice position: 0 is the most superior slice.

    Returns
    -------
    numpy.ndarray
        A ``(len(v), len(u))`` ``int16`` array of signal intensities in
        ``[0, 4095]``.
    """
    img = np.zeros((v.size, u.size), dtype=np.int16)
    # Head profile: smallest at the vertex (t = 0), widest near t = 0.8.
    head = 0.55 + 0.45 * math.sin(0.6 * math.pi * (0.15 + 0.85 * t))
    a, b = 0.70 * head, 0.86 * head
    layers = ((1.00, 900), (0.95, 60), (0.88, 250), (0.85, 550), (0.65, 750))
    for factor, value in layers:
        _paint_ellipse(img, u, v, (0.0, 0.0), (factor * a, factor * b), value)
    vent = _bump(t, 0.35, 0.75)
    for cx in (-0.11, 0.11):
        _paint_ellipse(img, u, v, (cx, -0.04), (0.06 * vent, 0.28 * vent), 200)
    return img


def _ct_pixels(rows: int, columns: int, slices: int, seed: int) -> Iterator[bytes]:
    """Yield the stored pixel data of each CT slice.

    Parameters
    ----------
    rows, columns, slices : int
        The volume size.
    seed : int
        The seed for the noise generator.

    Yields
    ------
    bytes
        Little endian signed 16-bit stored values,
        ``HU - CT_RESCALE_INTERCEPT``, with about +/-20 HU uniform noise.
    """
    rng = np.random.default_rng(seed)
    u, v = _axes(rows, columns)
    theta = np.arctan2(v[:, None] - _BODY_CY, u[None, :])
    rib_phase = (
        np.cos(12 * theta).astype(np.float32),
        np.sin(12 * theta).astype(np.float32),
    )
    for index in range(slices):
        t = index / max(slices - 1, 1)
        hu = _ct_slice_hu(u, v, rib_phase, t)
        hu += rng.integers(-20, 21, size=hu.shape, dtype=np.int16)
        hu -= np.int16(CT_RESCALE_INTERCEPT)  # now the stored values
        yield hu.astype("<i2", copy=False).tobytes()


def _mr_pixels(rows: int, columns: int, slices: int, seed: int) -> Iterator[bytes]:
    """Yield the stored pixel data of each MR slice.

    Parameters
    ----------
    rows, columns, slices : int
        The volume size.
    seed : int
        The seed for the noise generator.

    Yields
    ------
    bytes
        Little endian unsigned 16-bit values in ``[0, 4095]`` with
        Rician-like (non-negative) noise.
    """
    rng = np.random.default_rng(seed)
    u, v = _axes(rows, columns)
    for index in range(slices):
        t = index / max(slices - 1, 1)
        img = _mr_slice(u, v, t)
        noise = rng.integers(-25, 26, size=img.shape, dtype=np.int16)
        img = np.abs(img + noise)
        np.clip(img, 0, 4095, out=img)
        yield img.astype("<u2").tobytes()


def _us_frames(rows: int, columns: int, frames: int, seed: int) -> NDArray[np.uint8]:
    """Return the frames of a B-mode ultrasound cine loop.

    The image is a sector (fan) from a curved probe at the top centre, with
    depth attenuation, a fixed speckle pattern, an anechoic cyst and a
    bright echogenic blob that moves on a closed loop, so the cine repeats
    smoothly and every frame differs.

    Parameters
    ----------
    rows, columns, frames : int
        The cine size.
    seed : int
        The seed for the speckle generator.

    Returns
    -------
    numpy.ndarray
        A ``(frames, rows, columns)`` ``uint8`` array.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(rows, dtype=np.float32)[:, None]
    x = np.arange(columns, dtype=np.float32)[None, :]
    apex_y, apex_x = -0.15 * rows, (columns - 1) / 2
    radius = np.hypot(x - apex_x, y - apex_y)
    angle = np.arctan2(x - apex_x, y - apex_y)
    r_min, r_max = 0.25 * rows, 1.12 * rows
    fan = (np.abs(angle) <= 0.6) & (radius >= r_min) & (radius <= r_max)

    depth = np.clip((radius - r_min) / (r_max - r_min), 0.0, 1.0)
    tissue = 120.0 * np.exp(-1.2 * depth)
    cyst = np.square((x - 0.35 * columns) / (0.08 * columns))
    cyst = cyst + np.square((y - 0.55 * rows) / (0.07 * rows))
    tissue = np.where(cyst <= 1.0, 8.0, tissue)
    speckle = rng.rayleigh(scale=math.sqrt(2 / math.pi), size=(rows, columns))
    base = (tissue * speckle).astype(np.float32)

    out = np.zeros((frames, rows, columns), dtype=np.uint8)
    sigma2 = 2 * (0.05 * min(rows, columns)) ** 2
    for index in range(frames):
        phase = 2 * math.pi * index / frames
        bx = columns * (0.6 + 0.12 * math.cos(phase))
        by = rows * (0.45 + 0.15 * math.sin(phase))
        blob = 150.0 * np.exp(-(np.square(x - bx) + np.square(y - by)) / sigma2)
        frame = base * (1.0 + 0.1 * rng.standard_normal((rows, columns))) + blob
        frame = np.where(fan, frame, 0.0)
        out[index] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def make_ct_series(
    outdir: Path,
    slices: int = 50,
    rows: int = 512,
    columns: int = 512,
    *,
    patient_name: str = "DOE^JANE",
    patient_id: str = "PID0001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240115",
    accession: str = "ACC0001",
    seed: int = 0,
) -> list[Path]:
    """Write a synthetic axial chest CT series, one file per slice.

    Each file is a *CT Image Storage* (1.2.840.10008.5.1.4.1.1.2) instance
    in Explicit VR Little Endian with 16-bit signed ``MONOCHROME2`` pixels
    (*Bits Stored* 16, since stored values ``HU + 1024`` exceed the 12-bit
    signed range for bone), *Rescale Slope* 1, *Rescale Intercept* -1024,
    a 40/400 soft-tissue window, a 350 mm field of view and 1.25 mm slices.
    Files are named ``CT000001.dcm``, ``CT000002.dcm``, ... in `outdir`.

    Parameters
    ----------
    outdir : pathlib.Path
        The output directory; created if missing. Existing files with the
        same names are overwritten.
    slices : int, optional
        The number of slices (default 50).
    rows, columns : int, optional
        The image matrix size (default 512 x 512).
    patient_name : str, optional
        The (0010,0010) *Patient's Name*; may be non-ASCII (UTF-8 encoded).
    patient_id : str, optional
        The (0010,0020) *Patient ID*.
    study_uid, series_uid : str | None, optional
        The Study and Series Instance UIDs; generated if ``None``.
    study_date : str, optional
        The study date as ``YYYYMMDD``.
    accession : str, optional
        The (0008,0050) *Accession Number*.
    seed : int, optional
        The seed for the pixel noise; pixel data are reproducible for a
        given seed, UIDs are not.

    Returns
    -------
    list[pathlib.Path]
        The written files, in instance (head to foot) order.

    Raises
    ------
    TypeError
        If a count, size or `seed` is not an ``int``.
    ValueError
        If a parameter is out of range or malformed.
    """
    _check_positive("slices", slices, _MAX_COUNT)
    _check_positive("rows", rows, _MAX_DIMENSION)
    _check_positive("columns", columns, _MAX_DIMENSION)
    _check_common(
        patient_name=patient_name,
        patient_id=patient_id,
        study_date=study_date,
        accession=accession,
        seed=seed,
    )
    ds = _base_dataset(
        CTImageStorage,
        "CT",
        patient_name=patient_name,
        patient_id=patient_id,
        study_uid=_check_uid("study_uid", study_uid),
        series_uid=_check_uid("series_uid", series_uid),
        study_date=study_date,
        accession=accession,
        series_number=2,
        study_description="SYNTHETIC CT CHEST",
        series_description="AXIAL 1.25MM STANDARD",
        body_part="CHEST",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = "120"
    ds.XRayTubeCurrent = 200
    ds.ConvolutionKernel = "STANDARD"
    ds.GantryDetectorTilt = "0"
    ds.ReconstructionDiameter = "350"
    ds.RescaleIntercept = str(CT_RESCALE_INTERCEPT)
    ds.RescaleSlope = str(CT_RESCALE_SLOPE)
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    thickness = 1.25
    x0, y0 = _set_axial_plane(ds, rows, columns, fov_mm=350.0, thickness_mm=thickness)
    _set_pixel_module(ds, rows, columns, bits_allocated=16, bits_stored=16, signed=True)

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return _write_volume(
        ds,
        outdir,
        "CT",
        _ct_pixels(rows, columns, slices, seed),
        x0=x0,
        y0=y0,
        thickness_mm=thickness,
        count=slices,
    )


def make_mr_series(
    outdir: Path,
    slices: int = 20,
    rows: int = 256,
    columns: int = 256,
    *,
    patient_name: str = "DOE^JANE",
    patient_id: str = "PID0001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240115",
    accession: str = "ACC0001",
    seed: int = 0,
) -> list[Path]:
    """Write a synthetic axial T1-weighted head MR series, one file per slice.

    Each file is an *MR Image Storage* (1.2.840.10008.5.1.4.1.1.4) instance
    in Explicit VR Little Endian with 16-bit unsigned ``MONOCHROME2`` pixels
    (*Bits Stored* 12), a 230 mm field of view and 5 mm slices. Files are
    named ``MR000001.dcm``, ``MR000002.dcm``, ... in `outdir`.

    Parameters
    ----------
    outdir : pathlib.Path
        The output directory; created if missing. Existing files with the
        same names are overwritten.
    slices : int, optional
        The number of slices (default 20).
    rows, columns : int, optional
        The image matrix size (default 256 x 256).
    patient_name : str, optional
        The (0010,0010) *Patient's Name*; may be non-ASCII (UTF-8 encoded).
    patient_id : str, optional
        The (0010,0020) *Patient ID*.
    study_uid, series_uid : str | None, optional
        The Study and Series Instance UIDs; generated if ``None``.
    study_date : str, optional
        The study date as ``YYYYMMDD``.
    accession : str, optional
        The (0008,0050) *Accession Number*.
    seed : int, optional
        The seed for the pixel noise; pixel data are reproducible for a
        given seed, UIDs are not.

    Returns
    -------
    list[pathlib.Path]
        The written files, in instance (vertex to skull base) order.

    Raises
    ------
    TypeError
        If a count, size or `seed` is not an ``int``.
    ValueError
        If a parameter is out of range or malformed.
    """
    _check_positive("slices", slices, _MAX_COUNT)
    _check_positive("rows", rows, _MAX_DIMENSION)
    _check_positive("columns", columns, _MAX_DIMENSION)
    _check_common(
        patient_name=patient_name,
        patient_id=patient_id,
        study_date=study_date,
        accession=accession,
        seed=seed,
    )
    ds = _base_dataset(
        MRImageStorage,
        "MR",
        patient_name=patient_name,
        patient_id=patient_id,
        study_uid=_check_uid("study_uid", study_uid),
        series_uid=_check_uid("series_uid", series_uid),
        study_date=study_date,
        accession=accession,
        series_number=3,
        study_description="SYNTHETIC MR BRAIN",
        series_description="AX T1 SE",
        body_part="HEAD",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "se2d1"
    ds.RepetitionTime = "500"
    ds.EchoTime = "15"
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = "1.5"
    ds.ImagingFrequency = "63.87"
    ds.ImagedNucleus = "1H"
    ds.FlipAngle = "90"
    ds.WindowCenter = "600"
    ds.WindowWidth = "1200"
    thickness = 5.0
    x0, y0 = _set_axial_plane(ds, rows, columns, fov_mm=230.0, thickness_mm=thickness)
    _set_pixel_module(ds, rows, columns, bits_allocated=16, bits_stored=12, signed=False)

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return _write_volume(
        ds,
        outdir,
        "MR",
        _mr_pixels(rows, columns, slices, seed),
        x0=x0,
        y0=y0,
        thickness_mm=thickness,
        count=slices,
    )


def make_us_cine(
    outdir: Path,
    frames: int = 30,
    rows: int = 240,
    columns: int = 320,
    *,
    patient_name: str = "DOE^JANE",
    patient_id: str = "PID0001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240115",
    accession: str = "ACC0001",
    seed: int = 0,
    frame_time_ms: float = 33.3,
) -> list[Path]:
    """Write a synthetic B-mode ultrasound cine loop as one multi-frame file.

    The file is an *Ultrasound Multi-frame Image Storage*
    (1.2.840.10008.5.1.4.1.1.3.1) instance in Explicit VR Little Endian
    with 8-bit ``MONOCHROME2`` pixels, (0028,0008) *Number of Frames*,
    (0018,1063) *Frame Time*, (0018,0040) *Cine Rate* and (0028,0009)
    *Frame Increment Pointer* referencing *Frame Time*. It is named
    ``US000001.dcm`` in `outdir`.

    Parameters
    ----------
    outdir : pathlib.Path
        The output directory; created if missing. An existing file with the
        same name is overwritten.
    frames : int, optional
        The number of frames (default 30).
    rows, columns : int, optional
        The frame size (default 240 x 320).
    patient_name : str, optional
        The (0010,0010) *Patient's Name*; may be non-ASCII (UTF-8 encoded).
    patient_id : str, optional
        The (0010,0020) *Patient ID*.
    study_uid, series_uid : str | None, optional
        The Study and Series Instance UIDs; generated if ``None``.
    study_date : str, optional
        The study date as ``YYYYMMDD``.
    accession : str, optional
        The (0008,0050) *Accession Number*.
    seed : int, optional
        The seed for the speckle; pixel data are reproducible for a given
        seed, UIDs are not.
    frame_time_ms : float, optional
        The nominal time between frames in ms (default 33.3, ~30 fps).

    Returns
    -------
    list[pathlib.Path]
        A one-item list with the written file.

    Raises
    ------
    TypeError
        If a count, size or `seed` is not an ``int``.
    ValueError
        If a parameter is out of range or malformed.
    """
    _check_positive("frames", frames, _MAX_COUNT)
    _check_positive("rows", rows, _MAX_DIMENSION)
    _check_positive("columns", columns, _MAX_DIMENSION)
    _check_common(
        patient_name=patient_name,
        patient_id=patient_id,
        study_date=study_date,
        accession=accession,
        seed=seed,
    )
    if not (isinstance(frame_time_ms, (int, float)) and 0 < frame_time_ms < 1e5):
        raise ValueError("'frame_time_ms' must be a number in (0, 100000)")
    if frames * rows * columns > 2**31:
        raise ValueError("The cine would exceed 2 GiB of pixel data")

    ds = _base_dataset(
        UltrasoundMultiFrameImageStorage,
        "US",
        patient_name=patient_name,
        patient_id=patient_id,
        study_uid=_check_uid("study_uid", study_uid),
        series_uid=_check_uid("series_uid", series_uid),
        study_date=study_date,
        accession=accession,
        series_number=1,
        study_description="SYNTHETIC US ABDOMEN",
        series_description="B-MODE CINE",
        body_part="ABDOMEN",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = _fmt_ds(frame_time_ms)
    rate = max(1, round(1000.0 / frame_time_ms))
    ds.CineRate = rate
    ds.RecommendedDisplayFrameRate = rate
    _set_pixel_module(ds, rows, columns, bits_allocated=8, bits_stored=8, signed=False)

    pixels = _us_frames(rows, columns, frames, seed).tobytes()
    if len(pixels) % 2:
        pixels += b"\x00"  # Pixel Data must have an even length
    ds["PixelData"].value = pixels

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return [_write_instance(ds, outdir / "US000001.dcm")]


# ---------------------------------------------------------------------------
# Command line interface
# ---------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for :func:`main`.

    Returns
    -------
    argparse.ArgumentParser
        The configured parser.
    """
    parser = argparse.ArgumentParser(description="Write a synthetic DICOM series (no real patient data).")
    parser.add_argument("modality", choices=("ct", "mr", "us"))
    parser.add_argument("outdir", type=Path, help="output directory")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--slices", type=int, help="number of slices (ct, mr)")
    count.add_argument("--frames", type=int, help="number of frames (us)")
    parser.add_argument("--rows", type=int, help="image rows")
    parser.add_argument("--columns", type=int, help="image columns")
    parser.add_argument("--patient-name", default="DOE^JANE")
    parser.add_argument("--patient-id", default="PID0001")
    parser.add_argument("--study-uid", default=None)
    parser.add_argument("--series-uid", default=None)
    parser.add_argument("--study-date", default="20240115")
    parser.add_argument("--accession", default="ACC0001")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line interface.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, without the program name; ``sys.argv[1:]`` if
        ``None``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 on invalid arguments.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    is_us = args.modality == "us"
    if is_us and args.slices is not None:
        parser.error("use --frames, not --slices, with 'us'")
    if not is_us and args.frames is not None:
        parser.error(f"use --slices, not --frames, with '{args.modality}'")

    kwargs: dict[str, object] = {
        "patient_name": args.patient_name,
        "patient_id": args.patient_id,
        "study_uid": args.study_uid,
        "series_uid": args.series_uid,
        "study_date": args.study_date,
        "accession": args.accession,
        "seed": args.seed,
    }
    count = args.frames if is_us else args.slices
    if count is not None:
        kwargs["frames" if is_us else "slices"] = count
    if args.rows is not None:
        kwargs["rows"] = args.rows
    if args.columns is not None:
        kwargs["columns"] = args.columns

    makers = {"ct": make_ct_series, "mr": make_mr_series, "us": make_us_cine}
    try:
        paths = makers[args.modality](args.outdir, **kwargs)  # type: ignore[operator]
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))

    noun = "file" if len(paths) == 1 else "files"
    print(f"wrote {len(paths)} {args.modality.upper()} {noun} to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
