"""The archive's host name: what ``pacs init --hostname`` accepts for the server certificate."""

from __future__ import annotations

import ipaddress
import re

MAX_NAME = 253  # a DNS name written without a trailing dot (RFC 1035)
MAX_COMMON_NAME = 64  # the certificate's subject CN carries the host name (RFC 5280 ub-common-name)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_ip_address(value: str) -> bool:
    """Whether `value` is an IPv4 or IPv6 address (without a zone such as ``%eth0``)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return "%" not in value


def check_hostname(value: str) -> str | None:
    """Why `value` cannot name the archive in its certificate, or None when it can.

    It must be an IP address or a DNS name: dot-separated labels of 1 to 63 letters, digits
    and hyphens (no hyphen first or last), at most 253 characters without a trailing dot, not
    ending in an all-digit label (that is an incomplete address). IDNs go in as A-labels.
    The certificate's common name also limits it to 64 characters.
    """
    if is_ip_address(value):
        return None
    labels = value.split(".")
    if len(value) > MAX_NAME or not all(_LABEL.fullmatch(label) for label in labels):
        return (
            "is not a valid DNS name or IP address (letters, digits and hyphens in dot-separated "
            "labels of 1-63 characters, no hyphen first or last, at most 253 characters)"
        )
    if labels[-1].isdigit():
        return "is neither a complete IP address nor a DNS name (its last label is all digits)"
    if len(value) > MAX_COMMON_NAME:
        return f"is longer than the {MAX_COMMON_NAME} characters a certificate's common name holds"
    return None
