"""WADO-RS rendered images and thumbnails (PS3.18 10.4.1.1.3, 8.3.5.1): a frame as JPEG or PNG for display.

A frame is decoded as the viewer's are, and shares their cache
(:func:`webviewer.dicomweb.decoded_frame`: Modality LUT, palette and colour handled, within
the decoding limits, from the header and that frame's stored bytes alone), then a grayscale frame is rescaled
(slope and intercept) and windowed to 8 bits by PS3.3 C.11.2.1.2: ``window=center,width``
with ``function`` ``linear`` (the default), ``linear_exact`` or ``sigmoid``; without it the
object's first window (and its VOI LUT Function), else its first VOI LUT, else the frame's
range. MONOCHROME1, and a Presentation LUT Shape of INVERSE, show inverted. ``viewport=w,h``
scales the image to fit inside w x h, keeping its proportions (a thumbnail fits
:data:`THUMBNAIL_SIZE` unless asked otherwise); ``quality`` (1-100) is the JPEG quality.
The answer is image/jpeg unless the ``Accept`` header prefers image/png.

Pillow encodes the images; it is no decoder here (:mod:`pacs.ops.decoders`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from flask import Response, abort, current_app, request, stream_with_context
from PIL import Image

from storage.archive import InstanceInfo
from webviewer.decodelimits import FrameError
from webviewer.dicomweb import decoded_frame
from webviewer.multipart import Part, content_type, new_boundary, not_acceptable, parse_accept, related
from webviewer.pixels import Frame

JPEG, PNG = "image/jpeg", "image/png"
THUMBNAIL_SIZE = 128
FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
_NUMBER = r"\s*-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?\s*"
_WINDOW = re.compile(rf"^({_NUMBER}),({_NUMBER})(?:,\s*([a-zA-Z_]+)\s*)?$")
_VIEWPORT = re.compile(r"^\s*([0-9]{1,5})\s*,\s*([0-9]{1,5})\s*$")
_MAX_VIEWPORT = 8192


class RenderError(ValueError):
    """A malformed rendering parameter (the message says which)."""


@dataclass(frozen=True)
class Rendering:
    """How to render: media type, the window asked for (center, width, function), viewport, quality."""

    media_type: str = JPEG
    window: tuple[float, float, str] | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90


def image_type(accept: str | None) -> str:
    """image/jpeg or image/png, the first ``Accept`` takes (JPEG when it names neither); else 406."""
    ranges = parse_accept(accept)
    if not ranges:
        return JPEG
    for found in ranges:
        kind = found.type_param if found.media_type == "multipart/related" else found.media_type
        if kind == PNG:
            return PNG
        if kind is None or found.matches(JPEG) or kind == JPEG:
            return JPEG
    not_acceptable("rendered images are image/jpeg or image/png")


def rendering(args: Mapping[str, str], accept: str | None, *, thumbnail: bool = False) -> Rendering:
    """The rendering that the query parameters and ``Accept`` ask for; :class:`RenderError` if malformed."""
    window = None
    if args.get("window"):
        match = _WINDOW.match(args["window"])
        function = (match.group(3) or "linear").upper() if match else ""
        if not match or function not in FUNCTIONS or float(match.group(2)) <= 0:
            raise RenderError("window is center,width[,linear|linear_exact|sigmoid] with a positive width")
        window = (float(match.group(1)), float(match.group(2)), function)
    viewport = (THUMBNAIL_SIZE, THUMBNAIL_SIZE) if thumbnail else None
    if args.get("viewport"):
        match = _VIEWPORT.match(args["viewport"])
        if not match or not all(0 < int(side) <= _MAX_VIEWPORT for side in match.groups()):
            raise RenderError(f"viewport is width,height, each from 1 to {_MAX_VIEWPORT}")
        viewport = (int(match.group(1)), int(match.group(2)))
    quality = args.get("quality", "90" if not thumbnail else "75")
    if not quality.isdigit() or not 1 <= int(quality) <= 100:
        raise RenderError("quality is a whole number from 1 to 100")
    return Rendering(image_type(accept), window, viewport, int(quality))


def window_linear(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """`values` (modality values) windowed to 0..255 by PS3.3 C.11.2.1.2's `function`."""
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip(((values - center) / width + 0.5) * 255.0, 0, 255)
    if width <= 1:
        return np.where(values <= center - 0.5, 0.0, 255.0)
    return np.clip(((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0, 0, 255)


def _grayscale(frame: Frame, how: Rendering) -> np.ndarray:
    """The frame's samples as 8-bit display values."""
    dtype = np.dtype(frame.sample_format).newbyteorder("<")
    stored = np.frombuffer(frame.samples, dtype=dtype).reshape(frame.rows, frame.columns)
    values = stored.astype(np.float64) * frame.slope + frame.intercept
    if how.window is not None:
        shown = window_linear(values, *how.window)
    elif frame.windows:
        shown = window_linear(values, frame.windows[0].center, frame.windows[0].width, frame.voi_function)
    elif frame.voi_luts:
        lut = frame.voi_luts[0]
        index = np.clip(np.round((values - lut.first) / max(lut.step, 1)), 0, len(lut.data) - 1).astype(int)
        shown = lut.data[index].astype(np.float64) * (255.0 / (2**lut.bits - 1))
    else:
        low, high = float(values.min()), float(values.max())
        shown = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    inverse = (frame.photometric == "MONOCHROME1") != (frame.presentation_shape == "INVERSE")
    shown = np.round(shown).astype(np.uint8)
    return 255 - shown if inverse else shown


def picture(frame: Frame, how: Rendering) -> Image.Image:
    """`frame` as an 8-bit grayscale or RGB picture, scaled to fit the viewport."""
    if frame.sample_format == "rgb8":
        array = np.frombuffer(frame.samples, dtype=np.uint8).reshape(frame.rows, frame.columns, 3)
        image = Image.fromarray(array, "RGB")
    else:
        image = Image.fromarray(_grayscale(frame, how), "L")
    if how.viewport is not None:
        scale = min(how.viewport[0] / frame.columns, how.viewport[1] / frame.rows)
        size = (max(1, round(frame.columns * scale)), max(1, round(frame.rows * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def encode(frame: Frame, how: Rendering) -> bytes:
    """`frame` rendered as `how` says, encoded as its media type."""
    buffer = io.BytesIO()
    image = picture(frame, how)
    if how.media_type == PNG:
        image.save(buffer, "PNG", compress_level=6)
    else:
        image.save(buffer, "JPEG", quality=how.quality)
    return buffer.getvalue()


def _text(status: int, message: str) -> Response:
    return Response(message, status=status, mimetype="text/plain")


def _asked(*, thumbnail: bool) -> Rendering:
    """The request's rendering, or 400 with the reason."""
    try:
        return rendering(request.args, request.headers.get("Accept"), thumbnail=thumbnail)
    except RenderError as exc:
        abort(_text(400, str(exc)))


def rendered_frame(info: InstanceInfo, number: int, *, thumbnail: bool = False) -> Response:
    """Frame `number` of `info` rendered as the request asks (a thumbnail: small unless asked otherwise)."""
    how = _asked(thumbnail=thumbnail)
    try:
        body = encode(decoded_frame(info, number), how)
    except FrameError as exc:
        abort(_text(exc.status, str(exc)))
    response = Response(body, mimetype=how.media_type)
    response.vary.add("Accept")
    return response


def rendered_many(objects: list[tuple[InstanceInfo, str]]) -> Response:
    """The first frame of each of `objects` (with its URL) rendered, as multipart/related parts.

    An object that cannot be rendered (no pixel data, undecodable) is left out.
    """
    how = _asked(thumbnail=False)

    def parts() -> Iterator[Part]:
        for info, location in objects:
            try:
                yield Part(how.media_type, (encode(decoded_frame(info, 1), how),), location)
            except FrameError as exc:
                current_app.logger.info("WADO-RS rendered left %s out: %s", info.sop_uid, exc)

    boundary = new_boundary()
    body = stream_with_context(related(parts(), boundary))
    response = Response(body, content_type=content_type(how.media_type, boundary))
    response.vary.add("Accept")
    return response
