"""A pydicom decoding plugin for 12-bit JPEG Extended (1.2.840.10008.1.2.4.51) through GDCM.

pylibjpeg's libjpeg decodes conforming 12-bit streams but refuses common ones whose scan
header is not the sequential 0..63 (``JPEG-lossy.dcm`` of pydicom's test files, written by
an early GE scanner); pydicom's own GDCM plugin declines every 12-bit stream. GDCM
(python-gdcm) bundles the IJG 12-bit codec, which reads both, sample for sample as dcmtk's
``dcmdjpeg`` does. :func:`add_to_pydicom` adds this plugin to pydicom's JPEG Extended
decoder under :data:`LABEL`, after the plugins pydicom already has (libjpeg first). The
transcoder (:mod:`pacs.ops.transcode`) and the viewer (``webviewer.jpeg12``) both use it.

GDCM decodes into a buffer of the frame's size, and the result is checked against the size
the DICOM header gives.
"""

from __future__ import annotations

import threading
from typing import Any

from pydicom import uid
from pydicom.pixels import get_decoder

LABEL = "gdcm-jpeg12"
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("python-gdcm>=3.0.10",)}
_lock = threading.Lock()

try:
    import gdcm
except ImportError:  # declared in pyproject.toml; pydicom reports the plugin as unavailable
    gdcm = None


def is_available(transfer_syntax: str) -> bool:
    """Whether this plugin decodes `transfer_syntax` here (GDCM is installed and it is JPEG Extended)."""
    return gdcm is not None and transfer_syntax == uid.JPEGExtended12Bit


def decode_frame(src: bytes, runner: Any) -> bytes:
    """The grayscale or colour samples of one JPEG Extended frame `src`, as ``runner`` describes it."""
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    photometric = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(photometric))
    if runner.samples_per_pixel > 1:
        image.SetPlanarConfiguration(runner.planar_configuration)
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(uid.JPEGExtended12Bit))))
    bits = runner.bits_stored
    image.SetPixelFormat(
        gdcm.PixelFormat(
            runner.samples_per_pixel, runner.bits_allocated, bits, bits - 1, runner.pixel_representation
        )
    )
    # GDCM hands back char* as str: its bytes, surrogate-escaped.
    samples = image.GetBuffer().encode("utf-8", "surrogateescape")
    expected = runner.rows * runner.columns * runner.samples_per_pixel * (runner.bits_allocated // 8)
    if len(samples) != expected:
        raise ValueError(f"GDCM decoded {len(samples)} bytes, the frame has {expected}")
    return samples


def add_to_pydicom() -> None:
    """Add this plugin to pydicom's JPEG Extended decoder, once per process."""
    with _lock:
        decoder = get_decoder(uid.JPEGExtended12Bit)
        if LABEL not in decoder.available_plugins:
            decoder.add_plugin(LABEL, (__name__, "decode_frame"))
