"""Drawing helpers of the procedural phantoms: normalised pixel coordinates, ellipses, smooth profiles."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def axes(rows: int, columns: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
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


def window(
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
        The sorted 1-D column and row coordinates from :func:`axes`.
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


def ellipse(
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
        1-D column and row coordinates, e.g. from :func:`axes` or a
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


def paint_ellipse(
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
        The 1-D column and row coordinates from :func:`axes`.
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
    rows, cols = window(u, v, cx, cy, a, b)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return
    mask = ellipse(u[cols], v[rows], cx, cy, a, b)
    np.putmask(img[rows, cols], mask, value)


def bump(t: float, start: float, stop: float) -> float:
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
