"""The documents views of a large image read its header alone, never the whole object.

A 200 MiB native multi-frame object is stored as it streams in (built frame by frame, as in
:mod:`tests.web.test_large_object`), and its document page, panel and PDF link are asked for
through the app in this process while :mod:`tracemalloc` watches: the peak of what Python
allocates for each request must stay far below the object's size (reading it whole, as the
views once did, peaks above 200 MiB).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from tests.web import dicomweb_helpers
from tests.web.documents_helpers import document_url, outline
from tests.web.test_large_object import SIDE, _header, _part10, native_frame, receive
from tests.web.web_helpers import Browser, Web

lite, reader = dicomweb_helpers.lite, dicomweb_helpers.reader  # the module's shared archive and physician

FRAMES = 100  # 2 MiB each: 200 MiB in all
PEAK_BOUND = 16 * 2**20


def _large_image(frames: int) -> tuple[Dataset, Iterator[bytes]]:
    """The header of a native object of `frames` frames, and its Part 10 bytes frame by frame."""
    ds = _header(frames, ExplicitVRLittleEndian)
    length = frames * SIDE * SIDE * 2
    pixel_header = b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")
    return ds, _part10(ds, pixel_header, (native_frame(n) for n in range(1, frames + 1)))


@pytest.fixture(scope="module")
def large(lite: Web) -> Dataset:
    """The header of the 200 MiB image stored in the module's archive."""
    ds, pieces = _large_image(FRAMES)
    receive(lite.pacs, pieces)
    return ds


def _peak(browser: Browser, url: str) -> tuple[int, int, str]:
    """Status, peak bytes Python allocated and text of one GET of `url`."""
    tracemalloc.start()
    try:
        response = browser.get(url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return response.status_code, peak, response.text


def test_the_document_page_of_a_200_mib_image_reads_its_header_alone(reader: Browser, large: Dataset) -> None:
    status, peak, text = _peak(reader, document_url(large.StudyInstanceUID, large.SOPInstanceUID))
    assert status == 200
    shown = outline(text)
    assert shown.headings == [("h1", "Multi-frame Grayscale Word Secondary Capture Image")]
    assert "This object is an image: open the study in the viewer" in shown.text
    assert peak < PEAK_BOUND, f"the page peaked at {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("suffix", ["/panel", "/pdf"])
def test_the_panel_and_pdf_of_a_200_mib_image_are_404_without_reading_it_whole(
    reader: Browser, large: Dataset, suffix: str
) -> None:
    status, peak, _ = _peak(reader, document_url(large.StudyInstanceUID, large.SOPInstanceUID, suffix))
    assert status == 404
    assert peak < PEAK_BOUND, f"{suffix} peaked at {peak / 2**20:.1f} MiB"
