"""``[web] allowed_networks``: a request from elsewhere gets a plain 403 before anything else, audited.

A running ``pacs serve`` over real HTTPS allows 127.0.0.1 only; clients bind their side of the
connection to 127.0.0.2 or 127.0.0.3 to come from outside. The refusal comes before the login page,
a session cookie, static files and DICOMweb, a valid access token included. The aggregation of the
audit records (:class:`webviewer.networkgate.RefusalTrail`) is checked with a clock that only moves
when told, on both index backends.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pacs.core.accounts import Accounts
from pacs.core.config import load_settings, render_config, with_overrides
from pacs.core.context import Context, open_pacs
from pacs.core.tokens import Tokens
from tests.web.browser import PHYSICIAN
from tests.web.viewer_live import PASSWORD, Live, serve_archive
from tests.web.web_helpers import Clock, details
from webviewer.networkgate import MANY, REFUSED, WINDOW_SECONDS, RefusalTrail
from webviewer.security import HEADERS

OWNER = "client"


def _seed(pacs: Context) -> str:
    settings = with_overrides(pacs.settings, "web", allowed_networks=("127.0.0.1",))
    (pacs.settings.data_dir / "pacs.toml").write_text(render_config(settings))
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    accounts.add(OWNER, PHYSICIAN, PASSWORD)
    return Tokens(pacs.database, accounts, pacs.audit).create(OWNER, "pacs client", {"read"})[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[str]]:
    with serve_archive(tmp_path_factory.mktemp("allowed"), _seed, []) as served:
        yield served


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request(live: Live[Any], path: str, source: str, **headers: str) -> Answer:
    """GET `path` over verified HTTPS from the address `source`."""
    connection = http.client.HTTPSConnection(
        "localhost", live.port, context=live.tls(), source_address=(source, 0), timeout=30
    )
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def refusals(live: Live[Any], source: str) -> list[dict[str, Any]]:
    """The details of each network refusal of `source` in the running archive's audit trail."""
    pacs = open_pacs(load_settings(live.home.parent / "data", {}))
    try:
        found = [json.loads(r.details) for r in pacs.audit.records() if r.source == source]
    finally:
        pacs.close()
    return [d for d in found if d.get("what", "").endswith("refused: address not allowed")]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Accept": "application/dicom+json"}


def test_a_request_from_127_0_0_2_is_refused_with_403_before_the_login_page(live: Live[str]) -> None:
    response = request(live, "/login", "127.0.0.2")
    assert response.status == 403 and response.body == REFUSED
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers.get("Set-Cookie") is None
    for name, value in HEADERS.items():
        assert response.headers.get_all(name) == [value]
    assert refusals(live, "127.0.0.2")[0] == {
        "what": "web request refused: address not allowed",
        "path": "/login",
        "refused": 1,
    }


def test_127_0_0_1_gets_the_login_page(live: Live[str]) -> None:
    response = request(live, "/login", "127.0.0.1")
    assert response.status == 200 and b'name="password"' in response.body
    assert refusals(live, "127.0.0.1") == []


@pytest.mark.parametrize("path", ["/", "/static/app.css", "/dicomweb/studies", "/no/such/page"])
def test_every_path_is_refused_from_an_address_not_allowed(live: Live[str], path: str) -> None:
    response = request(live, path, "127.0.0.3")
    assert response.status == 403 and response.body == REFUSED


def test_a_valid_token_from_127_0_0_2_is_refused_and_audited_as_a_token(live: Live[str]) -> None:
    assert request(live, "/dicomweb/studies", "127.0.0.1", **bearer(live.seeded)).status == 200
    response = request(live, "/dicomweb/studies", "127.0.0.4", **bearer(live.seeded))
    assert response.status == 403 and response.body == REFUSED
    assert [d["what"] for d in refusals(live, "127.0.0.4")] == ["access token refused: address not allowed"]


def test_a_burst_of_refusals_from_one_address_is_one_audit_record(live: Live[str]) -> None:
    for _ in range(5):
        assert request(live, "/login", "127.0.0.5").status == 403
    assert [d["refused"] for d in refusals(live, "127.0.0.5")] == [1]


def _trail(pacs: Context, source: str) -> list[dict[str, Any]]:
    records = [r for r in pacs.audit.records() if r.event_id == "110113" and r.source == source]
    return [details(r) for r in records]


def test_refusals_within_a_minute_are_counted_and_recorded_once_the_minute_has_passed(pacs: Context) -> None:
    clock = Clock()
    trail = RefusalTrail(pacs.audit, clock)
    for _ in range(40):
        trail.refused("198.51.100.7", "web request", "/login")
        clock.advance(1)
    assert [d["refused"] for d in _trail(pacs, "198.51.100.7")] == [1]
    clock.advance(WINDOW_SECONDS)
    trail.refused("198.51.100.8", "web request", "/")  # any later refusal closes the windows that passed
    assert [d["refused"] for d in _trail(pacs, "198.51.100.7")] == [1, 39]
    assert _trail(pacs, "198.51.100.7")[1]["within_seconds"] == WINDOW_SECONDS
    trail.refused("198.51.100.7", "web request", "/login")
    assert [d["refused"] for d in _trail(pacs, "198.51.100.7")] == [1, 39, 1]


def test_a_scan_from_more_addresses_than_windows_shares_one_window(
    pacs: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("webviewer.networkgate.MAX_WINDOWS", 3)
    trail = RefusalTrail(pacs.audit, Clock())
    for host in range(10):
        trail.refused(f"198.51.100.{host}", "web request", "/")
    sources = [r.source for r in pacs.audit.records() if r.event_id == "110113"]
    assert sources == ["198.51.100.0", "198.51.100.1", "198.51.100.2", MANY]
