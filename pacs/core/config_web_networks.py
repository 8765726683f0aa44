"""Who may use the web viewer: ``[web] allowed_networks``, ``[web] trusted_proxies`` and the client address.

Both keys are lists of addresses or CIDR networks (``"10.8.0.0/24"``, ``"192.168.1.5"``) and are
fields of :class:`pacs.core.config.WebSettings`, defined here. ``allowed_networks`` defaults to
:data:`PRIVATE_NETWORKS`, the loopback, private (RFC 1918, RFC 4193), link-local and carrier-grade
NAT ranges (RFC 6598, which Tailscale uses): a fresh install answers the clinic's LAN, its VPN and
a reverse proxy on the same host, and not the Internet. An empty list means any address;
``pacs selfcheck`` flags a web port that listens on every address and answers any of them.
``trusted_proxies`` empty means no proxy is trusted, so an ``X-Forwarded-For`` header is ignored.

:meth:`WebNetworks.client` is the one rule deciding a request's client address: the TCP peer,
unless the peer is a trusted proxy; then the right-most ``X-Forwarded-For`` entry that is not
itself a trusted proxy (the entries a client wrote further left are not believed). A
malformed entry ends the walk at the last trusted hop: the proxy that appended it is the
client then, so a garbled header can never widen what is allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)


def parse_address(text: str) -> Address | None:
    """The IP address `text` (an IPv4-mapped IPv6 address as IPv4), or None if it is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_networks(values: tuple[str, ...]) -> str | None:
    """Why `values` is not a list of addresses or CIDR networks, or None."""
    for value in values:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError:
            return f"{value!r} is not an address or CIDR network such as 10.8.0.0/24 or 192.168.1.5"
    return None


def _networks_field(text: str, default: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"doc": text, "check": check_networks})


def allowed_networks_field() -> Any:
    """The ``[web] allowed_networks`` field of :class:`pacs.core.config.WebSettings`."""
    return _networks_field(
        "Addresses or CIDRs the web viewer and DICOMweb answer (tokens included), others get 403;"
        " default: loopback and private ranges (LAN, VPN); empty: any address.",
        PRIVATE_NETWORKS,
    )


def trusted_proxies_field() -> Any:
    """The ``[web] trusted_proxies`` field of :class:`pacs.core.config.WebSettings`."""
    return _networks_field(
        "Addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client; empty: none."
    )


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


@dataclass(frozen=True)
class WebNetworks:
    """The checked ``[web] allowed_networks`` (empty: any) and ``[web] trusted_proxies`` (empty: none)."""

    allowed: tuple[Network, ...] = ()
    proxies: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allowed: Iterable[str], proxies: Iterable[str]) -> WebNetworks:
        """The networks of two lists that :func:`check_networks` accepted."""
        return cls(
            tuple(ipaddress.ip_network(value, strict=True) for value in allowed),
            tuple(ipaddress.ip_network(value, strict=True) for value in proxies),
        )

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client address of a request from TCP `peer` carrying `forwarded_for` (None: no header).

        The header counts only when `peer` is a trusted proxy; then its entries are read from
        the right, skipping trusted proxies, and the first other address is the client.
        """
        hop = parse_address(peer)
        if hop is None:
            return peer
        if not forwarded_for or not _within(hop, self.proxies):
            return str(hop)
        for entry in reversed(forwarded_for.split(",")):
            earlier = parse_address(entry)
            if earlier is None:
                return str(hop)
            hop = earlier
            if not _within(hop, self.proxies):
                return str(hop)
        return str(hop)

    @property
    def answers_any(self) -> bool:
        """Whether every address is allowed (an empty list, or a ``/0`` in it)."""
        return not self.allowed or any(network.prefixlen == 0 for network in self.allowed)

    def allows(self, address: str) -> bool:
        """Whether a client at `address` may use the web viewer at all."""
        if not self.allowed:
            return True
        parsed = parse_address(address)
        return parsed is not None and _within(parsed, self.allowed)
