"""The synthetic B-mode ultrasound cine loop: its frames and :func:`make_us_cine`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import UltrasoundMultiFrameImageStorage

from tests.data.make_series.checks import Subject, check_sizes, fmt_ds
from tests.data.make_series.dataset import (
    SeriesKind,
    base_dataset,
    output_dir,
    set_pixel_module,
    write_instance,
)

_KIND = SeriesKind(
    UltrasoundMultiFrameImageStorage, "US", 1, "SYNTHETIC US ABDOMEN", "B-MODE CINE", "ABDOMEN"
)


def _frames(rows: int, columns: int, frames: int, seed: int) -> NDArray[np.uint8]:
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


def _cine_attributes(ds: Dataset, frames: int, frame_time_ms: float) -> None:
    """The image and multi-frame cine attributes: frame count, time and rate, Frame Increment Pointer."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = fmt_ds(frame_time_ms)
    rate = max(1, round(1000.0 / frame_time_ms))
    ds.CineRate = rate
    ds.RecommendedDisplayFrameRate = rate


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
    ``US000001.dcm`` in `outdir` (created if missing; a file of the same
    name is overwritten).

    `frames` (default 30) frames of `rows` x `columns` (default 240 x 320)
    pixels, `frame_time_ms` apart (default 33.3, ~30 fps); the other keyword
    arguments are those of every generator (see the package docstring).
    Returns a one-item list with the written file. Raises TypeError if a
    count, size or `seed` is not an ``int``, ValueError if a parameter is
    out of range or malformed.
    """
    subject = Subject(patient_name, patient_id, study_uid, series_uid, study_date, accession, seed)
    check_sizes("frames", frames, rows, columns)
    subject.check()
    if not (isinstance(frame_time_ms, (int, float)) and 0 < frame_time_ms < 1e5):
        raise ValueError("'frame_time_ms' must be a number in (0, 100000)")
    if frames * rows * columns > 2**31:
        raise ValueError("The cine would exceed 2 GiB of pixel data")
    ds = base_dataset(_KIND, subject)
    _cine_attributes(ds, frames, frame_time_ms)
    set_pixel_module(ds, rows, columns, bits_allocated=8, bits_stored=8, signed=False)
    pixels = _frames(rows, columns, frames, seed).tobytes()
    if len(pixels) % 2:
        pixels += b"\x00"  # Pixel Data must have an even length
    ds["PixelData"].value = pixels
    return [write_instance(ds, output_dir(outdir) / "US000001.dcm")]
