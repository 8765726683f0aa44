"""Personal access tokens: the service, the account and admin pages, and Bearer requests in process.

Tokens live in the index, so these run on both backends. The live HTTPS server's refusals are in
``test_tokens_live.py``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from pacs.core.audit_vocabulary import EventID, EventType
from pacs.core.config import with_overrides
from pacs.core.context import Context
from pacs.core.tokens import TokenError
from pacs.ops.selfcheck.access import check_access_tokens
from pacs.ops.selfcheck.report import Finding, Note
from storage.models import AccessToken, User
from tests.web.dicomweb_helpers import ACCESSED, Study, store_study
from tests.web.web_helpers import ADDRESS, ADMIN, Browser, Web, details, is_redirect_to, make_web

ALERT, AUTHENTICATION = str(EventID.SECURITY_ALERT), str(EventID.USER_AUTHENTICATION)
_SECRET = re.compile(r'id="token-secret">([^<]+)<')


def create_token(
    browser: Browser, name: str = "ohif", scope: str = "read", days: str = ""
) -> tuple[TestResponse, str]:
    """Create a token on the account page; the answer and the secret it shows ("" if none)."""
    response = browser.post(
        "/account/tokens", {"name": name, "scope": scope, "days": days}, form_page="/account/tokens"
    )
    found = _SECRET.search(response.text)
    return response, found.group(1) if found else ""


def with_token(web: Web, secret: str, path: str, address: str = ADDRESS, **headers: str) -> TestResponse:
    """GET `path` as a DICOMweb client with `secret`: no cookie, no CSRF token."""
    client = web.app.test_client()
    client.environ_base.update({"wsgi.url_scheme": "https", "REMOTE_ADDR": address})
    return client.get(path, headers={"Authorization": f"Bearer {secret}", **headers})


def token_row(web: Web, secret: str) -> AccessToken:
    with web.pacs.database.read() as db:
        return db.scalars(select(AccessToken).where(AccessToken.prefix == secret[:12])).one()


def refusals(web: Web) -> list[dict[str, str]]:
    return [details(r) for r in web.audit(ALERT) if details(r).get("what") == "access token refused"]


def series_path(study: Study) -> str:
    return f"/dicomweb/studies/{study.uid}/series"


# Creating, listing and revoking.


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(web: Web, doc: Browser) -> None:
    response, secret = create_token(doc)
    assert response.status_code == 200 and secret.startswith("pacs_") and len(secret) == 48
    assert response.headers["Cache-Control"] == "no-store"
    again = doc.get("/account/tokens").text
    assert secret not in again and secret[:12] in again
    row = token_row(web, secret)
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    with web.pacs.database.read() as db:
        stored = db.execute(select(AccessToken.__table__)).one()
    assert not any(secret in str(value) for value in stored)


def test_a_token_expires_after_90_days_unless_asked_and_never_after_more_than_365(web: Web) -> None:
    web.user("doc")
    tokens = web.app.extensions["pacs"].tokens
    default, _ = tokens.create("doc", "default", {"read"})
    longest, _ = tokens.create("doc", "longest", {"read", "store"}, 365)
    assert default.expires_at - default.created_at == timedelta(days=90)
    assert longest.expires_at - longest.created_at == timedelta(days=365)
    with pytest.raises(TokenError, match="1 to 365 days"):
        tokens.create("doc", "too long", {"read"}, 366)
    with pytest.raises(TokenError, match="read, or read and store"):
        tokens.create("doc", "store only", {"store"})


def test_the_form_refuses_an_expiry_over_a_year_and_creates_nothing(web: Web, doc: Browser) -> None:
    response, secret = create_token(doc, days="400")
    assert is_redirect_to(response, "/account/tokens") and not secret
    assert doc.messages() == ["A token expires after 1 to 365 days."]
    assert web.app.extensions["pacs"].tokens.of_user("doc") == []


def test_a_user_lists_and_revokes_their_own_tokens_and_no_one_elses(web: Web, doc: Browser) -> None:
    create_token(doc, "weasis", "read-store", "30")
    other = web.logged_in(web.user("other"))
    _, theirs = create_token(other, "theirs")
    page = doc.get("/account/tokens").text
    assert "weasis" in page and "read, store" in page and "theirs" not in page
    mine = web.app.extensions["pacs"].tokens.of_user("doc")[0]
    their_id = token_row(web, theirs).id
    assert is_redirect_to(
        doc.post(f"/account/tokens/{their_id}/revoke", {}, form_page="/account/tokens"), "/account/tokens"
    )
    assert doc.messages() == [f"No token {their_id} of yours."]
    doc.post(f"/account/tokens/{mine.id}/revoke", {}, form_page="/account/tokens")
    assert [t.state(datetime.now(UTC)) for t in web.app.extensions["pacs"].tokens.of_user("doc")] == [
        "revoked"
    ]
    assert token_row(web, theirs).revoked_at is None


def test_an_admin_sees_and_revokes_everyones_tokens(web: Web, doc: Browser) -> None:
    _, secret = create_token(doc, "ohif")
    admin = web.logged_in(web.user("root", ADMIN))
    page = admin.get("/admin/tokens")
    assert page.status_code == 200 and "ohif" in page.text and "doc" in page.text
    assert "any address" in page.text
    token_id = token_row(web, secret).id
    admin.post(f"/admin/tokens/{token_id}/revoke", {}, form_page="/admin/tokens")
    assert token_row(web, secret).revoked_by == "root"
    assert with_token(web, secret, "/dicomweb/studies").status_code == 401


def test_only_admins_reach_the_admin_page_and_only_logged_in_users_their_own(web: Web, doc: Browser) -> None:
    assert doc.get("/admin/tokens").status_code == 403
    assert is_redirect_to(web.browser().get("/account/tokens"), "/login")
    assert doc.client.post("/account/tokens", data={"name": "no csrf", "scope": "read"}).status_code == 400


def test_creation_and_revocation_are_audited_with_the_token_but_never_its_secret(
    web: Web, doc: Browser
) -> None:
    _, secret = create_token(doc, "slicer", "read-store", "7")
    token_id = token_row(web, secret).id
    doc.post(f"/account/tokens/{token_id}/revoke", {}, form_page="/account/tokens")
    changes = [
        r for r in web.audit(ALERT, str(EventType.USER_SECURITY_ATTRIBUTES_CHANGED)) if "owner" in details(r)
    ]
    assert [(r.action, r.user_id, r.source, details(r)["what"]) for r in changes] == [
        ("C", "doc", ADDRESS, "access token created"),
        ("D", "doc", ADDRESS, "access token revoked"),
    ]
    assert {details(r)["token"] for r in changes} == {secret[:12]}
    assert details(changes[0])["scopes"] == "read,store"
    assert all(secret not in r.details for r in web.pacs.audit.records())


# Bearer requests.


def test_a_read_token_reads_a_study_without_session_and_its_use_is_audited(
    web: Web, doc: Browser, ct: Study
) -> None:
    _, secret = create_token(doc)
    response = with_token(web, secret, series_path(ct))
    assert response.status_code == 200 and response.json[0]["0020000E"]["Value"] == [ct.series_uid]
    assert "Set-Cookie" not in response.headers
    used = [
        r for r in web.audit(AUTHENTICATION, user="doc") if details(r).get("what") == "access token accepted"
    ]
    assert [(r.source, details(r)["token"]) for r in used] == [(ADDRESS, secret[:12])]
    row = token_row(web, secret)
    assert row.last_used_from == ADDRESS and row.last_used_at is not None
    assert secret[:12] in doc.get("/account/tokens").text and ADDRESS in doc.get("/account/tokens").text


def test_a_tokens_access_to_a_study_is_audited_once_per_token_and_study(
    web: Web, doc: Browser, ct: Study
) -> None:
    _, first = create_token(doc, "first")
    _, second = create_token(doc, "second")
    for secret in (first, first, second):
        assert with_token(web, secret, series_path(ct)).status_code == 200
    assert with_token(web, first, f"{series_path(ct)}/{ct.series_uid}/instances").status_code == 200
    records = web.audit(ACCESSED, user="doc")
    assert [(r.study_uid, details(r)["how"]) for r in records] == [
        (ct.uid, f"dicomweb, access token {first[:12]}"),
        (ct.uid, f"dicomweb, access token {second[:12]}"),
    ]


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        ("expire", "token expired"),
        ("revoke", "token revoked"),
        ("disable", "account disabled"),
        ("demote", "account without the physician role"),
    ],
)
def test_a_spoilt_token_is_refused_401_and_audited(
    web: Web, doc: Browser, ct: Study, spoil: str, reason: str
) -> None:
    _, secret = create_token(doc)
    with web.pacs.database.write() as db:
        if spoil == "expire":
            db.execute(update(AccessToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        elif spoil == "revoke":
            db.execute(update(AccessToken).values(revoked_at=datetime.now(UTC), revoked_by="doc"))
        else:
            change = {"disabled": True} if spoil == "disable" else {"roles": "admin"}
            db.execute(update(User).where(User.name == "doc").values(**change))
    response = with_token(web, secret, series_path(ct))
    assert response.status_code == 401 and "invalid_token" in response.headers["WWW-Authenticate"]
    assert [(r["reason"], r["token"]) for r in refusals(web)] == [(reason, secret[:12])]
    assert web.audit(ACCESSED) == []


def test_an_unknown_token_and_no_token_are_401_never_a_redirect(web: Web, ct: Study) -> None:
    unknown = with_token(web, "pacs_" + "x" * 43, series_path(ct))
    assert unknown.status_code == 401 and unknown.headers["WWW-Authenticate"].startswith("Bearer")
    anonymous = web.browser().get(series_path(ct))
    assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous.headers
    assert [(r["reason"], r["path"]) for r in refusals(web)] == [("unknown token", series_path(ct))]


def test_a_token_in_a_url_query_is_refused_and_audited_even_with_a_good_header(
    web: Web, doc: Browser, ct: Study
) -> None:
    _, secret = create_token(doc)
    for query in (f"access_token={secret}", f"token={secret}", f"includefield={secret}"):
        response = with_token(web, secret, f"{series_path(ct)}?{query}")
        assert response.status_code == 401 and "Authorization header" in response.text
    assert [r["reason"] for r in refusals(web)] == ["token in a URL query"] * 3
    assert [r["parameter"] for r in refusals(web)] == ["access_token", "token", "includefield"]
    assert all(secret not in r.details for r in web.pacs.audit.records())
    assert web.audit(ACCESSED) == []


def test_a_token_from_outside_the_configured_networks_is_refused(pacs: Context, ct_dir: Path) -> None:
    web = make_web(pacs, token_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    study = store_study(pacs, sorted(ct_dir.glob("*.dcm")))
    _, secret = create_token(web.logged_in(web.user("doc")))
    assert with_token(web, secret, series_path(study), address="10.1.2.3").status_code == 200
    assert with_token(web, secret, series_path(study), address=ADDRESS).status_code == 401
    assert [r["reason"] for r in refusals(web)] == ["address outside the networks tokens may come from"]


# CORS.


def test_cors_answers_a_configured_origin_only_without_credentials(pacs: Context) -> None:
    web = make_web(pacs, cors_origins=("https://ohif.clinic.example",))
    client = web.app.test_client()
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = client.options(
        "/dicomweb/studies", headers={"Origin": "https://ohif.clinic.example", **preflight}
    )
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ohif.clinic.example"
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert allowed.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    other = client.options("/dicomweb/studies", headers={"Origin": "https://evil.example", **preflight})
    assert not [h for h in other.headers if h[0].startswith("Access-Control-")]
    refused = client.get("/dicomweb/studies", headers={"Origin": "https://ohif.clinic.example"})
    assert refused.status_code == 401 and "Origin" in refused.headers["Vary"]
    assert refused.headers["Access-Control-Allow-Origin"] == "https://ohif.clinic.example"
    page = client.get("/login", headers={"Origin": "https://ohif.clinic.example"})
    assert "Access-Control-Allow-Origin" not in page.headers


# The posture report.


def test_selfcheck_notes_tokens_from_anywhere_and_finds_an_origin_without_https(web: Web) -> None:
    assert list(check_access_tokens(web.pacs, datetime.now(UTC))) == []
    web.user("doc")
    web.app.extensions["pacs"].tokens.create("doc", "ohif", {"read"})
    [note] = check_access_tokens(web.pacs, datetime.now(UTC))
    assert isinstance(note, Note) and "1 active DICOMweb access token(s)" in note.message
    settings = with_overrides(
        web.pacs.settings, "web", token_networks=("10.0.0.0/8",), cors_origins=("http://ohif.example",)
    )
    [finding] = check_access_tokens(replace(web.pacs, settings=settings), datetime.now(UTC))
    assert isinstance(finding, Finding) and "https://ohif.example" in finding.fix
