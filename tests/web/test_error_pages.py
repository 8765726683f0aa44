"""Error answers: pages in the app's layout for a person, text as before for scripts and DICOMweb clients.

403, 404 ("No such study" under /studies/), 405, 400 (a failed CSRF check), 413 and 500 are
drawn with ``base.html`` and say what to do; none shows a trace, and each is ``no-store``. An
admin without the physician role who opens ``/`` lands on the admin area instead of a 403.
Under the DICOMweb root the answers stay text (a view's own reason untouched).
"""

from __future__ import annotations

import re

from werkzeug.test import TestResponse

from pacs.core.audit import EventID
from tests.web.web_helpers import ADMIN, Browser, Web, location

_H1 = re.compile(r"<h1>(.*?)</h1>", re.S)


def _page(response: TestResponse, status: int) -> str:
    """The error page's heading, once it is checked to be a page of the app's layout."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    page = response.text
    assert '<span class="brand">mini-PACS</span>' in page and "app.css" in page
    assert f'data-status="{status}"' in page
    assert "Traceback" not in page and "werkzeug" not in page.lower()
    heading = _H1.search(page)
    assert heading is not None
    return heading.group(1).strip()


def test_an_unknown_study_is_no_such_study_in_the_layout(doc: Browser) -> None:
    assert _page(doc.get("/studies/1.2.3.4.5"), 404) == "No such study"


def test_an_unknown_page_is_no_such_page(doc: Browser) -> None:
    assert _page(doc.get("/no/such/page"), 404) == "No such page"


def test_a_page_of_another_role_says_you_do_not_have_access(web: Web, doc: Browser) -> None:
    response = doc.get("/admin/users")
    assert _page(response, 403) == "You do not have access to this page"
    assert 'href="/" id="home"' in response.text
    assert len(web.audit(str(EventID.SECURITY_ALERT), user="doc")) == 1  # the refusal is still audited


def test_an_admin_opening_the_start_page_lands_on_the_admin_area(web: Web) -> None:
    boss = web.logged_in(web.user("boss", ADMIN))
    response = boss.get("/")
    assert response.status_code == 302 and location(response) == "/admin/users"
    # The study list was still refused, and audited so (tests/web/test_studies.py).
    assert len(web.audit(str(EventID.SECURITY_ALERT), user="boss")) == 1
    assert _page(boss.get("/studies/1.2.3.4.5"), 403) == "You do not have access to this page"


def test_a_get_of_a_form_target_is_405_with_allow(doc: Browser) -> None:
    response = doc.get("/logout")
    assert _page(response, 405) == "This page cannot be used that way"
    assert "POST" in response.headers["Allow"]


def test_a_form_without_its_csrf_token_is_400_this_form_has_expired(doc: Browser) -> None:
    response = doc.client.post("/account/tokens", data={"name": "x"})
    assert _page(response, 400) == "This form has expired"
    assert "Reload the page" in response.text and "The CSRF token is missing." in response.text


def test_a_body_over_the_form_limit_is_413(doc: Browser) -> None:
    response = doc.client.post("/login", data={"username": "x" * (70 * 1024)})
    assert _page(response, 413) == "That was more than this page accepts"


def test_a_crash_is_500_without_its_trace(web: Web) -> None:
    def crash() -> str:
        raise RuntimeError("secret detail of the crash")

    web.app.add_url_rule("/crash-for-test", view_func=crash)
    response = web.browser().get("/crash-for-test")
    assert _page(response, 500) == "Something went wrong on the server"
    assert "secret detail" not in response.text and "RuntimeError" not in response.text


def test_an_anonymous_visitor_is_pointed_to_the_login(web: Web) -> None:
    response = web.browser().get("/no/such/page")
    assert _page(response, 404) == "No such page"
    assert 'href="/login" id="home"' in response.text


def test_dicomweb_answers_stay_text(doc: Browser, web: Web) -> None:
    missing = doc.get("/dicomweb/studies/1.2.3.4.5/metadata")
    assert missing.status_code == 404 and missing.mimetype == "text/plain"
    assert missing.headers["Cache-Control"] == "no-store" and "<html" not in missing.text.lower()
    anonymous = web.browser().get("/dicomweb/studies")
    assert anonymous.status_code == 401 and anonymous.mimetype == "text/plain"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    bad = doc.get("/dicomweb/studies?limit=many")
    assert bad.status_code == 400 and bad.mimetype == "text/plain" and "limit" in bad.text


def test_a_script_fetch_of_an_unknown_study_gets_text(doc: Browser) -> None:
    response = doc.get("/studies/1.2.3.4.5/related")
    assert response.status_code == 404 and response.mimetype == "text/plain"
    assert "<html" not in response.text.lower()


def test_a_client_that_accepts_no_html_gets_text(doc: Browser) -> None:
    response = doc.client.get("/no/such/page", headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.mimetype == "text/plain"


def test_a_session_post_to_dicomweb_without_its_csrf_token_is_400_text(doc: Browser) -> None:
    response = doc.client.post("/dicomweb/studies", data=b"x", content_type="application/dicom")
    assert response.status_code == 400 and response.mimetype == "text/plain"
    assert response.text == "400 Bad Request: The CSRF token is missing.\n"
