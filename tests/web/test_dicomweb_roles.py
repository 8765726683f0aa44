"""Who may see images through DICOMweb, and that its responses are not cached."""

from __future__ import annotations

import pydicom

from tests.web.dicomweb_helpers import ACCESSED, EXPORT, Study
from tests.web.web_helpers import ADMIN, Browser, Web

# Who may see images.


def test_admin_without_the_physician_role_gets_no_images(web: Web, ct: Study) -> None:
    boss = web.logged_in(web.user("boss", ADMIN))
    pixels = pydicom.dcmread(ct.path()).PixelData
    urls = [
        f"/dicomweb/studies/{ct.uid}/series",
        f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances",
        ct.frame_url(),
        f"/studies/{ct.uid}",
        f"/studies/{ct.uid}/instances/{ct.sop()}/tags",
        f"/studies/{ct.uid}/download",
    ]
    for url in urls:
        response = boss.get(url)
        assert response.status_code == 403, url
        assert "X-Sample-Format" not in response.headers
        assert pixels[:64] not in response.data and b"QUIXOTE" not in response.data
    assert web.audit(ACCESSED) == [] and web.audit(EXPORT) == []


def test_responses_are_not_cached(doc: Browser, ct: Study) -> None:
    urls = [
        f"/dicomweb/studies/{ct.uid}/series",
        f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances",
        ct.frame_url(),
        ct.frame_url(2),  # an error answer
        f"/studies/{ct.uid}",
        f"/studies/{ct.uid}/instances/{ct.sop()}/tags",
        f"/studies/{ct.uid}/download",
    ]
    for url in urls:
        assert "no-store" in doc.get(url).headers.get("Cache-Control", ""), url
