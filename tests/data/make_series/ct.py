"""The synthetic axial chest CT series: its phantom and :func:`make_ct_series`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.uid import CTImageStorage

from tests.data.make_series.checks import Subject, check_sizes
from tests.data.make_series.dataset import AxialVolume, SeriesKind, write_axial_series
from tests.data.make_series.phantoms import axes, bump, ellipse, paint_ellipse, window

#: CT rescale parameters: HU = stored * slope + intercept.
CT_RESCALE_SLOPE = 1
CT_RESCALE_INTERCEPT = -1024
#: Vertical centre of the CT body outline, in normalised image units.
_BODY_CY = 0.02
_VOLUME = AxialVolume(fov_mm=350.0, thickness_mm=1.25, bits_stored=16, signed=True)
_KIND = SeriesKind(CTImageStorage, "CT", 2, "SYNTHETIC CT CHEST", "AXIAL 1.25MM STANDARD", "CHEST")
_ATTRIBUTES = {
    "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    "KVP": "120",
    "XRayTubeCurrent": 200,
    "ConvolutionKernel": "STANDARD",
    "GantryDetectorTilt": "0",
    "ReconstructionDiameter": "350",
    "RescaleIntercept": str(CT_RESCALE_INTERCEPT),
    "RescaleSlope": str(CT_RESCALE_SLOPE),
    "RescaleType": "HU",
    "WindowCenter": "40",
    "WindowWidth": "400",
}


def _paint_ribs(
    img: NDArray[np.int16],
    u: NDArray[np.float32],
    v: NDArray[np.float32],
    body_axes: tuple[float, float],
    rib_phase: tuple[NDArray[np.float32], NDArray[np.float32]],
    t: float,
) -> None:
    """Draw the ribs: an annulus inside the body outline, gated by angle.

    The pattern rotates and switches on and off along z (`t`) to mimic ribs
    entering and leaving the slice. `rib_phase` is ``(cos(12 * theta),
    sin(12 * theta))`` for the polar angle of each pixel about the body
    centre, precomputed once per series; `body_axes` are the body's semi-axes.
    """
    a_body, b_body = body_axes
    body = (0.0, _BODY_CY)
    rows, cols = window(u, v, *body, 0.90 * a_body, 0.90 * b_body)
    uu, vv = u[cols], v[rows]
    ring = ellipse(uu, vv, *body, 0.90 * a_body, 0.90 * b_body)
    ring &= ~ellipse(uu, vv, *body, 0.84 * a_body, 0.84 * b_body)
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


def _slice_hu(
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

    `u`, `v` are the 1-D column and row coordinates from :func:`axes`,
    `rib_phase` is that of :func:`_paint_ribs` and `t` the normalised slice
    position (0 is the most superior slice). Returns a ``(len(v), len(u))``
    ``int16`` array of Hounsfield units.
    """
    img = np.full((v.size, u.size), -1000, dtype=np.int16)
    scale = 0.95 + 0.05 * math.sin(math.pi * t)
    a_body, b_body = 0.88 * scale, 0.62 * scale
    body = (0.0, _BODY_CY)
    paint_ellipse(img, u, v, body, (a_body, b_body), -100)
    paint_ellipse(img, u, v, body, (0.93 * a_body, 0.93 * b_body), 40)

    lung = bump(t, 0.05, 0.95)
    for cx in (-0.40, 0.40):
        paint_ellipse(img, u, v, (cx, -0.02), (0.30 * lung, 0.42 * lung), -850)
    heart = bump(t, 0.40, 1.00)
    paint_ellipse(img, u, v, (0.10, -0.08), (0.26 * heart, 0.20 * heart), 45)
    paint_ellipse(img, u, v, (0.17, 0.22), (0.06, 0.06), 50)

    _paint_ribs(img, u, v, (a_body, b_body), rib_phase, t)

    paint_ellipse(img, u, v, (0.0, -0.55), (0.05, 0.03), 600)
    paint_ellipse(img, u, v, (0.0, 0.36), (0.12, 0.10), 900)
    paint_ellipse(img, u, v, (0.0, 0.36), (0.10, 0.08), 250)
    paint_ellipse(img, u, v, (0.0, 0.51), (0.04, 0.04), 10)
    return img


def _pixels(rows: int, columns: int, slices: int, seed: int) -> Iterator[bytes]:
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
    u, v = axes(rows, columns)
    theta = np.arctan2(v[:, None] - _BODY_CY, u[None, :])
    rib_phase = (
        np.cos(12 * theta).astype(np.float32),
        np.sin(12 * theta).astype(np.float32),
    )
    for index in range(slices):
        t = index / max(slices - 1, 1)
        hu = _slice_hu(u, v, rib_phase, t)
        hu += rng.integers(-20, 21, size=hu.shape, dtype=np.int16)
        hu -= np.int16(CT_RESCALE_INTERCEPT)  # now the stored values
        yield hu.astype("<i2", copy=False).tobytes()


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
    Files are named ``CT000001.dcm``, ``CT000002.dcm``, ... in `outdir`
    (created if missing; files of the same names are overwritten).

    `slices` (default 50) slices of `rows` x `columns` (default 512 x 512)
    pixels; the keyword arguments are those of every generator (see the
    package docstring). Returns the written files, in instance (head to
    foot) order. Raises TypeError if a count, size or `seed` is not an
    ``int``, ValueError if a parameter is out of range or malformed.
    """
    subject = Subject(patient_name, patient_id, study_uid, series_uid, study_date, accession, seed)
    check_sizes("slices", slices, rows, columns)
    subject.check()
    pixels = _pixels(rows, columns, slices, seed)
    return write_axial_series(outdir, _KIND, _ATTRIBUTES, _VOLUME, subject, (slices, rows, columns), pixels)
