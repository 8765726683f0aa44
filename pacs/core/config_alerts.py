"""The ``[alerts]`` section of pacs.toml: where alerts for a person go (e-mail, syslog over TLS).

E-mail goes by SMTP with STARTTLS or implicit TLS (there is no plaintext option), logged in
with a password read from a file of mode 0600 (never from pacs.toml). Syslog goes over TLS
(RFC 5425) and carries the alerts and the audit trail as DICOM audit messages. The server's
certificate is always verified, its name included. A channel whose host is empty is off.
:mod:`pacs.core.config` lists this section beside the others (keys, environment variables).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage.errors import PacsError

SECURITY = ("starttls", "tls")
STANDARD_PORTS = {"starttls": 587, "tls": 465}
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9.-]+$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^[0-9A-Fa-f:.]{2,45}$")


class AlertSettingsError(PacsError, ValueError):
    """The ``[alerts]`` keys do not fit together; the message names them."""


def _doc(text: str, check: Callable[[Any], str | None] | None = None) -> dict[str, Any]:
    return {"doc": text, "check": check}


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number from 0 to 65535"


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than zero"


def _host(value: str) -> str | None:
    return None if not value or _HOST.match(value) else "must be empty (off) or a host name or IP address"


def _security(value: str) -> str | None:
    return None if value in SECURITY else "must be starttls or tls (there is no plaintext option)"


def _file(value: str) -> str | None:
    return None if not value or value.startswith("/") else "must be empty or an absolute path"


def _address(value: str) -> str | None:
    return (
        None
        if not value or _ADDRESS.match(value)
        else "must be an e-mail address such as pacs@clinic.example"
    )


def _addresses(values: tuple[str, ...]) -> str | None:
    for value in values:
        if not _ADDRESS.match(value):
            return f"{value!r} is not an e-mail address such as admin@clinic.example"
    return None


@dataclass(frozen=True)
class AlertSettings:
    """Alerts for a person: e-mail over SMTP with TLS, and syslog over TLS (RFC 5425)."""

    smtp_host: str = field(
        default="", metadata=_doc("SMTP server for alert e-mail; empty: no e-mail.", _host)
    )
    smtp_port: int = field(default=0, metadata=_doc("SMTP port; 0: 587 for starttls, 465 for tls.", _port))
    smtp_security: str = field(
        default="starttls", metadata=_doc("starttls (port 587) or tls (implicit TLS, port 465).", _security)
    )
    smtp_user: str = field(default="", metadata=_doc("SMTP login name; empty: no login."))
    smtp_password_file: str = field(
        default="",
        metadata=_doc(
            "Absolute path of a file (mode 0600) holding the SMTP password; never in pacs.toml.", _file
        ),
    )
    smtp_ca_file: str = field(
        default="",
        metadata=_doc(
            "PEM file of the CA to verify the SMTP server with; empty: the system's trust store.", _file
        ),
    )
    mail_from: str = field(default="", metadata=_doc("Sender address of alert e-mail.", _address))
    mail_to: tuple[str, ...] = field(default=(), metadata=_doc("Addresses alert e-mail goes to.", _addresses))
    syslog_host: str = field(
        default="",
        metadata=_doc("Syslog server (TLS, RFC 5425) for alerts and audit records; empty: none.", _host),
    )
    syslog_port: int = field(default=6514, metadata=_doc("Syslog TLS port.", _port))
    syslog_ca_file: str = field(
        default="",
        metadata=_doc(
            "PEM file of the CA to verify the syslog server with; empty: the system's trust store.", _file
        ),
    )
    syslog_cert_file: str = field(
        default="",
        metadata=_doc("Client certificate shown to the syslog server; empty: the archive's own.", _file),
    )
    syslog_key_file: str = field(
        default="", metadata=_doc("Private key of syslog_cert_file; empty: the archive's own.", _file)
    )
    window_minutes: int = field(
        default=15,
        metadata=_doc("Minutes over which Security Alerts are gathered into one alert.", _positive),
    )

    def __post_init__(self) -> None:
        if self.smtp_host and not (self.mail_from and self.mail_to):
            raise AlertSettingsError("[alerts] smtp_host is set: mail_from and mail_to must be set too")
        if self.smtp_user and not self.smtp_password_file:
            raise AlertSettingsError(
                "[alerts] smtp_user is set: smtp_password_file must name the password file"
            )
        if bool(self.syslog_cert_file) != bool(self.syslog_key_file):
            raise AlertSettingsError(
                "[alerts] syslog_cert_file and syslog_key_file go together: set both or neither"
            )

    @property
    def mail_port(self) -> int:
        """The SMTP port to connect to: ``smtp_port``, or the standard one of ``smtp_security``."""
        return self.smtp_port or STANDARD_PORTS[self.smtp_security]
