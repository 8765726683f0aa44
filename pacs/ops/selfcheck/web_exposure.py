"""The check of who can reach the web viewer: ``[web] bind``, ``allowed_networks`` and ``trusted_proxies``."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import datetime

from pacs.core.config_web_networks import WebNetworks
from pacs.core.context import Context
from pacs.ops.selfcheck.report import Finding, Note, Result

CHECK = "web-exposure"
_EXAMPLE = '["192.168.1.0/24", "10.8.0.0/24"]'


def check_web_exposure(pacs: Context, now: datetime) -> Iterator[Result]:
    """A web port on every address that answers any client, or a proxy list that trusts everyone: findings."""
    web = pacs.settings.web
    networks = WebNetworks.of(web.allowed_networks, web.trusted_proxies)
    everywhere = ipaddress.ip_address(web.bind).is_unspecified
    if networks.answers_any and everywhere:
        yield Finding(
            CHECK,
            f"the web viewer listens on every address ({web.bind}:{web.port}) and answers any client "
            "([web] allowed_networks lets every address in): whoever reaches the port from the Internet "
            "gets the login page",
            f"set [web] allowed_networks in pacs.toml to the clinic's LAN and VPN ranges, e.g. {_EXAMPLE}, "
            "and restart pacs serve",
        )
    elif networks.answers_any:
        yield Note(CHECK, f"the web viewer answers any client that reaches {web.bind}:{web.port}")
    else:
        allowed = ", ".join(str(network) for network in networks.allowed)
        yield Note(CHECK, f"the web viewer answers {allowed} only; others get 403")
    if any(network.prefixlen == 0 for network in networks.proxies):
        yield Finding(
            CHECK,
            "[web] trusted_proxies trusts every address: any client can name itself in X-Forwarded-For "
            "and pass [web] allowed_networks, the login throttle and the audit trail as someone else",
            "list only the reverse proxy's own address in [web] trusted_proxies and restart pacs serve",
        )
    elif networks.proxies:
        proxies = ", ".join(str(network) for network in networks.proxies)
        yield Note(CHECK, f"X-Forwarded-For names the client in requests from {proxies} only")
