"""STOW-RS (PS3.18 10.5): objects posted as multipart/related application/dicom go the C-STORE way in."""

from __future__ import annotations

import hashlib
from pathlib import Path

from werkzeug.test import TestResponse

from tests.web.web_helpers import Browser

BOUNDARY = "stow-test-boundary-7f3a"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def multipart(parts: list[bytes], boundary: str = BOUNDARY) -> bytes:
    """`parts` as a multipart/related body of application/dicom parts."""
    body = b"".join(
        b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), part) for part in parts
    )
    return body + b"--%s--\r\n" % boundary.encode()


def post_stow(browser: Browser, parts: list[bytes], path: str = "/dicomweb/studies") -> TestResponse:
    """POST `parts` to `path` with the session of `browser` and its CSRF token."""
    token = browser.token("/account/password")
    headers = {"X-CSRFToken": token, "Accept": "application/dicom+json"}
    return browser.client.post(path, data=multipart(parts), content_type=STOW_TYPE, headers=headers)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_stow_stores_posted_instances(doc: Browser, ct_dir: Path) -> None:
    files = sorted(ct_dir.glob("*.dcm"))[:2]
    response = post_stow(doc, [f.read_bytes() for f in files])
    assert response.status_code == 200, response.text
