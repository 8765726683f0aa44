"""``[web] trusted_proxies``: an X-Forwarded-For header names the client only when a listed proxy sent it.

The rule itself (:meth:`WebNetworks.client`) is checked on its own; then the web viewer in process
shows that throttling and the audit ``source`` use the forwarded address via a trusted proxy only;
then a running ``pacs serve`` over real HTTPS refuses a client a trusted proxy forwards from outside
``[web] allowed_networks``, and ignores the same header from a peer that is not a proxy. Chromium is
shown the refusal through the proxy (a screenshot, ``network-refused.png`` in the test's directory).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from sqlalchemy import select

from pacs.core.config import load_settings, render_config, with_overrides
from pacs.core.config_web_networks import WebNetworks
from pacs.core.context import Context, open_pacs
from storage.models import LoginThrottle
from tests.web.viewer_live import Live, new_context, serve_archive
from tests.web.web_helpers import Web, details, make_web
from webviewer.networkgate import REFUSED

PROXY = "127.0.0.1"
VPN = "10.9.0.0/24"
ALLOWED = (PROXY, VPN)


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.2", "10.9.0.7", "127.0.0.2"),  # not a proxy: the header is ignored
        ("127.0.0.1", None, "127.0.0.1"),  # a proxy's own request
        ("127.0.0.1", "10.9.0.7", "10.9.0.7"),
        ("127.0.0.1", "203.0.113.5, 10.9.0.7", "10.9.0.7"),  # the client cannot claim an address
        ("127.0.0.1", "10.9.0.7, 127.0.0.1", "10.9.0.7"),  # a chain of trusted proxies is walked
        ("127.0.0.1", "10.9.0.7, not-an-address", "127.0.0.1"),  # a garbled entry: the proxy is the client
        ("::ffff:127.0.0.1", "10.9.0.8", "10.9.0.8"),  # a dual-stack socket's IPv4-mapped peer
    ],
)
def test_the_client_is_the_right_most_forwarded_address_that_is_not_a_trusted_proxy(
    peer: str, forwarded: str | None, client: str
) -> None:
    networks = WebNetworks.of(ALLOWED, [PROXY])
    assert networks.client(peer, forwarded) == client


def test_without_trusted_proxies_no_forwarded_address_counts() -> None:
    assert WebNetworks.of(ALLOWED, []).client("127.0.0.1", "10.9.0.7") == "127.0.0.1"


def _failed_login(web: Web, peer: str, forwarded: str) -> str:
    """Enter a wrong password from `peer` with `forwarded` in X-Forwarded-For; the audit record's source."""
    web.user("doc")
    browser = web.browser(peer)
    browser.client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded
    browser.enter_password("doc", "a wrong guess")
    failed = [record for record in web.audit("110114") if details(record).get("step") == "password"]
    assert len(failed) == 1
    return str(failed[0].source)


def _throttled_addresses(web: Web) -> set[str]:
    with web.pacs.database.read() as db:
        keys = db.scalars(select(LoginThrottle.key)).all()
    return {key.removeprefix("addr:") for key in keys if key.startswith("addr:")}


def test_via_a_trusted_proxy_the_audit_and_the_throttle_see_the_forwarded_address(pacs: Context) -> None:
    web = make_web(pacs, networks=WebNetworks.of(ALLOWED, [PROXY]))
    assert _failed_login(web, PROXY, "10.9.0.7") == "10.9.0.7"
    assert _throttled_addresses(web) == {"10.9.0.7"}


def test_from_a_peer_that_is_no_proxy_the_audit_and_the_throttle_see_the_peer(pacs: Context) -> None:
    web = make_web(pacs, networks=WebNetworks.of(ALLOWED, []))
    assert _failed_login(web, PROXY, "10.9.0.7") == PROXY
    assert _throttled_addresses(web) == {PROXY}


def _seed(proxies: tuple[str, ...]) -> Any:
    def seed(pacs: Context) -> None:
        settings = with_overrides(pacs.settings, "web", allowed_networks=ALLOWED, trusted_proxies=proxies)
        (pacs.settings.data_dir / "pacs.toml").write_text(render_config(settings))

    return seed


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[None]]:
    """``pacs serve`` behind a reverse proxy on 127.0.0.1, answering it and the VPN."""
    with serve_archive(tmp_path_factory.mktemp("proxied"), _seed((PROXY,)), []) as served:
        yield served


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[None]]:
    """The same archive settings without a trusted proxy."""
    with serve_archive(tmp_path_factory.mktemp("direct"), _seed(()), []) as served:
        yield served


def get(live: Live[Any], path: str, **headers: str) -> tuple[int, bytes]:
    """GET `path` from 127.0.0.1 over verified HTTPS: the status and the body."""
    connection = http.client.HTTPSConnection(
        "localhost", live.port, context=live.tls(), source_address=("127.0.0.1", 0), timeout=30
    )
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def refusals(live: Live[Any]) -> list[dict[str, Any]]:
    """Source and details of each network refusal in the running archive's audit trail."""
    pacs = open_pacs(load_settings(live.home.parent / "data", {}))
    try:
        found = [(r.source, json.loads(r.details)) for r in pacs.audit.records() if r.event_id == "110113"]
    finally:
        pacs.close()
    return [{"source": s, **d} for s, d in found if d.get("what", "").endswith("address not allowed")]


def test_a_client_a_trusted_proxy_forwards_from_outside_the_allowed_networks_is_refused(
    live: Live[None],
) -> None:
    status, body = get(live, "/login", **{"X-Forwarded-For": "127.0.0.2"})
    assert (status, body) == (403, REFUSED)
    assert [(r["path"], r["refused"]) for r in refusals(live) if r["source"] == "127.0.0.2"] == [
        ("/login", 1)
    ]


def test_a_client_a_trusted_proxy_forwards_from_the_vpn_gets_the_login_page(live: Live[None]) -> None:
    status, body = get(live, "/login", **{"X-Forwarded-For": "203.0.113.9, 10.9.0.7"})
    assert status == 200 and b'name="password"' in body


def test_the_header_from_a_peer_that_is_no_trusted_proxy_is_ignored(direct: Live[None]) -> None:
    status, body = get(direct, "/login", **{"X-Forwarded-For": "127.0.0.2"})
    assert status == 200 and b'name="password"' in body
    assert refusals(direct) == []


def test_chromium_behind_the_proxy_is_shown_the_plain_refusal(
    browser: Browser, live: Live[None], tmp_path: Path
) -> None:
    with new_context(browser, live) as context:
        context.set_extra_http_headers({"X-Forwarded-For": "192.0.2.44"})
        page = context.new_page()
        response = page.goto("/login")
        assert response is not None and response.status == 403
        page.screenshot(path=str(tmp_path / "network-refused.png"))
        assert page.locator("body").inner_text().strip() == REFUSED.decode().strip()
        assert page.locator("form").count() == 0
    assert "192.0.2.44" in [r["source"] for r in refusals(live)]
