"""WADO-RS retrieve of an object that may not be decoded: refused with the reason, never a hang.

pydicom's ``JPEG2000-embedded-sequence-delimiter.dcm`` claims 14,540,801 JPEG 2000 tiles.
Asked in Explicit VR Little Endian, it would have to be transcoded; the checks of
:mod:`pacs.ops.decodelimits` refuse it before any decoder runs. Each request runs in a
thread joined with a timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from werkzeug.test import TestResponse

from tests.web import dicomweb_helpers
from tests.web.dicomweb_helpers import rewritten, store_one, store_study
from tests.web.wado_helpers import parts, url
from tests.web.web_helpers import Browser, Web

lite, reader = dicomweb_helpers.lite, dicomweb_helpers.reader  # the module's shared archive and physician
BOMB = "JPEG2000-embedded-sequence-delimiter.dcm"
REASON = "the JPEG 2000 stream has 14,540,801 tiles"
EXPLICIT = {
    "Accept": f'multipart/related; type="application/dicom"; transfer-syntax={ExplicitVRLittleEndian}'
}
GIVE_UP_SECONDS = 120  # only a hang reaches it: each request here takes well under a second


def _get_in_time(browser: Browser, target: str) -> TestResponse:
    """GET `target` asking for Explicit VR Little Endian, body read, in a thread joined with a timeout."""
    found: list[TestResponse] = []

    def fetch() -> None:
        response = browser.client.get(target, headers=EXPLICIT)
        response.get_data()
        found.append(response)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(GIVE_UP_SECONDS)
    assert not worker.is_alive(), f"the retrieve had not finished after {GIVE_UP_SECONDS} s"
    assert found, "the retrieve raised (see the thread's exception above)"
    return found[0]


def test_an_instance_of_millions_of_jpeg_2000_tiles_asked_uncompressed_is_not_acceptable_with_the_reason(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    stored = store_one(lite.pacs, rewritten(Path(get_testdata_file(BOMB)), tmp_path / BOMB))

    response = _get_in_time(reader, url(stored.study_uid, stored.series_uid, stored.sop_uid))

    assert response.status_code in (406, 422)
    assert REASON in response.get_data(as_text=True)
    assert b"DICM" not in response.data


def test_a_study_with_such_an_instance_leaves_it_out_with_the_reason_and_sends_the_others(
    lite: Web, reader: Browser, tmp_path: Path
) -> None:
    new = {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid()}
    bomb, good = (
        rewritten(Path(get_testdata_file(name)), tmp_path / name, **new) for name in (BOMB, "JPEG2000.dcm")
    )
    study = store_study(lite.pacs, [bomb, good])

    response = _get_in_time(reader, url(study.uid))

    assert response.status_code == 206
    assert REASON in response.headers["Warning"]
    [part] = parts(response, "application/dicom")
    assert part.params["transfer-syntax"] == ExplicitVRLittleEndian
