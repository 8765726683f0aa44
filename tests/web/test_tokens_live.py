"""Access tokens against a running ``pacs serve`` over real HTTPS: what a DICOMweb client meets.

The archive takes tokens from 127.0.0.1 only (``[web] token_networks``) and lets one origin call
in (``[web] cors_origins``). The refusals are read back from the audit trail of the running archive.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from pacs.core.accounts import Accounts
from pacs.core.config import load_settings, render_config, with_overrides
from pacs.core.context import Context, open_pacs
from pacs.core.tokens import Tokens
from storage.models import AccessToken
from tests.web.browser import PHYSICIAN
from tests.web.dicomweb_helpers import Study, store_study
from tests.web.viewer_live import PASSWORD, Live, serve_archive

ORIGIN = "https://ohif.clinic.example"
OWNER = "client"


@dataclass(frozen=True)
class Seeded:
    """The stored study and the secrets of the owner's tokens, by what happened to them."""

    study: Study
    secrets: dict[str, str]


def _seed(ct_dir: Path) -> Any:
    def seed(pacs: Context) -> Seeded:
        settings = with_overrides(
            pacs.settings, "web", token_networks=("127.0.0.1/32",), cors_origins=(ORIGIN,)
        )
        (pacs.settings.data_dir / "pacs.toml").write_text(render_config(settings))
        study = store_study(pacs, sorted(ct_dir.glob("*.dcm")))
        accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
        accounts.add(OWNER, PHYSICIAN, PASSWORD)
        tokens = Tokens(pacs.database, accounts, pacs.audit)
        secrets = {what: tokens.create(OWNER, what, {"read"})[1] for what in ("read", "expired", "revoked")}
        with pacs.database.write() as db:
            past = datetime.now(UTC) - timedelta(minutes=1)
            db.execute(update(AccessToken).where(AccessToken.name == "expired").values(expires_at=past))
        tokens.revoke(tokens.of_user(OWNER)[0].id, by=OWNER)
        assert tokens.of_user(OWNER)[0].name == "revoked"
        return Seeded(study, secrets)

    return seed


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, ct_dir: Path) -> Iterator[Live[Seeded]]:
    with serve_archive(tmp_path_factory.mktemp("tokens"), _seed(ct_dir), []) as served:
        yield served


def request(
    live: Live[Any], method: str, path: str, *, source: str = "127.0.0.1", **headers: str
) -> http.client.HTTPResponse:
    """One HTTPS request to `live` from the address `source`, the certificate verified."""
    connection = http.client.HTTPSConnection(
        "localhost", live.port, context=live.tls(), source_address=(source, 0), timeout=30
    )
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Accept": "application/dicom+json"}


def refusal_reasons(live: Live[Any]) -> list[tuple[str, str]]:
    """(reason, token prefix) of every token refusal in the running archive's audit trail."""
    pacs = open_pacs(load_settings(live.home.parent / "data", {}))
    try:
        found = [json.loads(r.details) for r in pacs.audit.records() if r.event_id == "110113"]
    finally:
        pacs.close()
    return [(d["reason"], d.get("token", "")) for d in found if d.get("what") == "access token refused"]


def test_a_read_token_lists_the_studies_over_https(live: Live[Seeded]) -> None:
    connection = http.client.HTTPSConnection("localhost", live.port, context=live.tls(), timeout=30)
    connection.request("GET", "/dicomweb/studies", headers=bearer(live.seeded.secrets["read"]))
    response = connection.getresponse()
    body = json.loads(response.read())
    assert response.status == 200, body
    assert [study["0020000D"]["Value"] for study in body] == [[live.seeded.study.uid]]


@pytest.mark.parametrize("what", ["expired", "revoked"])
def test_an_expired_or_revoked_token_is_refused_and_audited(live: Live[Seeded], what: str) -> None:
    secret = live.seeded.secrets[what]
    response = request(live, "GET", f"/dicomweb/studies/{live.seeded.study.uid}/series", **bearer(secret))
    assert response.status == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert (f"token {what}", secret[:12]) in refusal_reasons(live)


def test_a_token_from_an_unlisted_network_is_refused_and_audited(live: Live[Seeded]) -> None:
    secret = live.seeded.secrets["read"]
    response = request(live, "GET", "/dicomweb/studies", source="127.0.0.2", **bearer(secret))
    assert response.status == 401
    assert ("address outside the networks tokens may come from", secret[:12]) in refusal_reasons(live)


def test_a_token_in_a_url_query_is_refused_and_audited(live: Live[Seeded]) -> None:
    secret = live.seeded.secrets["read"]
    response = request(live, "GET", f"/dicomweb/studies?access_token={secret}")
    assert response.status == 401
    assert ("token in a URL query", "") in refusal_reasons(live)


def test_a_read_token_cannot_store_and_the_attempt_is_audited(live: Live[Seeded]) -> None:
    secret = live.seeded.secrets["read"]
    headers = {**bearer(secret), "Content-Type": 'multipart/related; type="application/dicom"; boundary=b'}
    response = request(live, "POST", "/dicomweb/studies", **headers)
    assert response.status == 403 and 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert ("scope store not granted", secret[:12]) in refusal_reasons(live)


def test_cors_preflight_is_allowed_for_the_configured_origin_only(live: Live[Seeded]) -> None:
    asks = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = request(live, "OPTIONS", "/dicomweb/studies", Origin=ORIGIN, **asks)
    assert allowed.status == 204 and allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "Origin" in allowed.headers["Vary"]
    other = request(live, "OPTIONS", "/dicomweb/studies", Origin="https://elsewhere.example", **asks)
    assert not [name for name in other.headers if name.lower().startswith("access-control-")]
    answer = request(live, "GET", "/dicomweb/studies", Origin=ORIGIN, **bearer(live.seeded.secrets["read"]))
    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert answer.headers.get("Access-Control-Allow-Credentials") is None
