"""pydicom's decoders as every process of the archive uses them: one choice for the viewer and the transcoder.

python-gdcm and Pillow are installed (GDCM for 12-bit JPEG, Pillow to encode rendered
images), and installing them makes pydicom try their plugins *first* for every JPEG,
JPEG-LS and JPEG 2000 syntax. The decoding limits (:mod:`pacs.ops.decodelimits`) and the
pixel tests were written for pylibjpeg's and pyjpegls's decoders, so :func:`configure`
takes those two plugins out and adds the 12-bit JPEG Extended plugin of
:mod:`pacs.ops.jpeg12` (after libjpeg) instead. Both the transcoder and the viewer call it
before decoding anything.
"""

from __future__ import annotations

import threading

from pydicom import uid
from pydicom.pixels import get_decoder

from pacs.ops import jpeg12

FIRST_TRIED_BY_PYDICOM = ("gdcm", "pillow")
_SYNTAXES = (*uid.JPEGTransferSyntaxes, *uid.JPEGLSTransferSyntaxes, *uid.JPEG2000TransferSyntaxes)
_lock = threading.Lock()


def configure() -> None:
    """Take GDCM's and Pillow's plugins out of pydicom's JPEG decoders and add the 12-bit one (idempotent)."""
    with _lock:
        for syntax in _SYNTAXES:
            try:
                decoder = get_decoder(syntax)
            except NotImplementedError:  # a syntax pydicom has no decoder for (JPEG 2000 Part 2)
                continue
            for plugin in FIRST_TRIED_BY_PYDICOM:
                if plugin in decoder.available_plugins:
                    decoder.remove_plugin(plugin)
    jpeg12.add_to_pydicom()
