"""The synthetic axial T1-weighted head MR series: its phantom and :func:`make_mr_series`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.uid import MRImageStorage

from tests.data.make_series.checks import Subject, check_sizes
from tests.data.make_series.dataset import AxialVolume, SeriesKind, write_axial_series
from tests.data.make_series.phantoms import axes, bump, paint_ellipse

_KIND = SeriesKind(MRImageStorage, "MR", 3, "SYNTHETIC MR BRAIN", "AX T1 SE", "HEAD")
_VOLUME = AxialVolume(fov_mm=230.0, thickness_mm=5.0, bits_stored=12, signed=False)
_ATTRIBUTES = {
    "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
    "ScanningSequence": "SE",
    "SequenceVariant": "NONE",
    "ScanOptions": "",
    "MRAcquisitionType": "2D",
    "SequenceName": "se2d1",
    "RepetitionTime": "500",
    "EchoTime": "15",
    "EchoTrainLength": 1,
    "MagneticFieldStrength": "1.5",
    "ImagingFrequency": "63.87",
    "ImagedNucleus": "1H",
    "FlipAngle": "90",
    "WindowCenter": "600",
    "WindowWidth": "1200",
}


def _slice(u: NDArray[np.float32], v: NDArray[np.float32], t: float) -> NDArray[np.int16]:
    """Return one noiseless axial slice of a T1-weighted head phantom.

    The phantom has a bright scalp, a dark skull, CSF, grey matter, brighter
    white matter and dark lateral ventricles. The head narrows towards the
    vertex and the ventricles appear only in the middle slices.

    Parameters
    ----------
    u, v : numpy.ndarray
        The 1-D column and row coordinates from :func:`axes`.
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
        paint_ellipse(img, u, v, (0.0, 0.0), (factor * a, factor * b), value)
    vent = bump(t, 0.35, 0.75)
    for cx in (-0.11, 0.11):
        paint_ellipse(img, u, v, (cx, -0.04), (0.06 * vent, 0.28 * vent), 200)
    return img


def _pixels(rows: int, columns: int, slices: int, seed: int) -> Iterator[bytes]:
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
    u, v = axes(rows, columns)
    for index in range(slices):
        t = index / max(slices - 1, 1)
        img = _slice(u, v, t)
        noise = rng.integers(-25, 26, size=img.shape, dtype=np.int16)
        img = np.abs(img + noise)
        np.clip(img, 0, 4095, out=img)
        yield img.astype("<u2").tobytes()


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
    named ``MR000001.dcm``, ``MR000002.dcm``, ... in `outdir` (created if
    missing; files of the same names are overwritten).

    `slices` (default 20) slices of `rows` x `columns` (default 256 x 256)
    pixels; the keyword arguments are those of every generator (see the
    package docstring). Returns the written files, in instance (vertex to
    skull base) order. Raises TypeError if a count, size or `seed` is not
    an ``int``, ValueError if a parameter is out of range or malformed.
    """
    subject = Subject(patient_name, patient_id, study_uid, series_uid, study_date, accession, seed)
    check_sizes("slices", slices, rows, columns)
    subject.check()
    pixels = _pixels(rows, columns, slices, seed)
    return write_axial_series(outdir, _KIND, _ATTRIBUTES, _VOLUME, subject, (slices, rows, columns), pixels)
