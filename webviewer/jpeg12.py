"""The viewer's choice of JPEG decoders: pylibjpeg's and pyjpegls's, and GDCM for 12-bit JPEG only.

The 12-bit JPEG Extended plugin itself lives in :mod:`pacs.ops.jpeg12` (the transcoder uses
it too); :data:`LABEL` names it. :mod:`webviewer.pixels` asks for it when libjpeg fails
(libjpeg first: the two differ by one stored value here and there on lossy streams, and
libjpeg is what the viewer always used).

The frame's size has been checked against the DICOM header, and its JPEG frame header
against both, before any decoder runs (:mod:`webviewer.decodelimits`); GDCM decodes into a
buffer of that size.
"""

from __future__ import annotations

import threading

from pydicom import uid
from pydicom.pixels import get_decoder

from pacs.ops.jpeg12 import LABEL, add_to_pydicom

__all__ = ["LABEL", "register"]

DECODER_SYNTAXES = (
    *uid.JPEGTransferSyntaxes,
    *uid.JPEGLSTransferSyntaxes,
    *uid.JPEG2000TransferSyntaxes,
)
_lock = threading.Lock()


def register() -> None:
    """Add the 12-bit plugin to pydicom's JPEG Extended decoder; take pydicom's own GDCM plugin out (once).

    Installing python-gdcm makes pydicom's GDCM plugin the first it tries for every JPEG,
    JPEG-LS and JPEG 2000 syntax; the viewer's codestream checks and its tests were written
    for pylibjpeg's and pyjpegls's decoders, which stay the ones pydicom uses in this process.
    """
    with _lock:
        for syntax in DECODER_SYNTAXES:
            try:
                decoder = get_decoder(syntax)
            except NotImplementedError:  # a syntax pydicom has no decoder for (JPEG 2000 Part 2)
                continue
            if "gdcm" in decoder.available_plugins:
                decoder.remove_plugin("gdcm")
    add_to_pydicom()
