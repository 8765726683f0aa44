"""Syslog over TLS (RFC 5425) for alerts and the audit trail as DICOM audit messages (PS3.15 A.5, A.6).

Each message is RFC 5424 (``<PRI>1 TIMESTAMP HOST pacs PROCID MSGID - MSG``) framed by octet
counting (``LEN SP SYSLOG-MSG``). Audit records go as their PS3.15 A.5.1 XML
(:func:`pacs.core.atna.atna_message`) with facility 10, severity 5 (``<85>``) and MSGID
``DICOM+RFC3881``, as PS3.15 A.6 asks; alerts go with severity 4 (warning) and MSGID
``PACS-ALERT``. The server's certificate is verified against ``[alerts] syslog_ca_file`` (or the
system's trust store) and must name ``syslog_host``; we show the archive's own certificate as
the client's (or ``syslog_cert_file``). A batch goes over one connection; :meth:`SyslogChannel.send`
returns after a TLS close the server answered, that is after it has read the whole batch.
"""

from __future__ import annotations

import os
import socket
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pacs.core.atna import atna_message
from pacs.core.config_alerts import AlertSettings
from storage.models import AuditRecord

TIMEOUT = 30.0
# How long the server has to refuse us (our certificate) after the handshake, before we send.
REFUSAL_WAIT = 0.5
AUDIT_MSGID, ALERT_MSGID = "DICOM+RFC3881", "PACS-ALERT"
_AUDIT_PRI, _ALERT_PRI = 10 * 8 + 5, 10 * 8 + 4
_BOM = "\ufeff"


class Message(Protocol):
    """What an alert carries."""

    kind: str
    subject: str
    text: str


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _header_word(value: str) -> str:
    """`value` as an RFC 5424 header field: printable ASCII without spaces, or ``-``."""
    word = "".join(c for c in value if 33 <= ord(c) <= 126)
    return word[:255] or "-"


def syslog_message(pri: int, hostname: str, msgid: str, text: str) -> bytes:
    """One RFC 5424 message: no structured data, `text` as UTF-8 after a BOM."""
    header = f"<{pri}>1 {_timestamp()} {_header_word(hostname)} pacs {os.getpid()} {msgid} -"
    return f"{header} {_BOM}{text}".encode()


def frame(message: bytes) -> bytes:
    """`message` with its RFC 5425 octet count in front (``LEN SP``)."""
    return f"{len(message)} ".encode() + message


def audit_message(record: AuditRecord, hostname: str) -> bytes:
    """The audit record as its PS3.15 A.5.1 XML in one syslog message (PRI 85, MSGID DICOM+RFC3881)."""
    xml = ET.tostring(atna_message(record, hostname), encoding="unicode")
    return syslog_message(_AUDIT_PRI, hostname, AUDIT_MSGID, xml)


class SyslogChannel:
    """A syslog server over TLS taking alerts and audit messages."""

    def __init__(self, settings: AlertSettings, hostname: str, identity: tuple[Path, Path] | None) -> None:
        self.settings = settings
        self.hostname = hostname
        self._identity = identity
        self.name = f"syslog {settings.syslog_host}:{settings.syslog_port}"

    def alert_message(self, alert: Message) -> bytes:
        """`alert` as one syslog message (PRI 84, MSGID PACS-ALERT): ``kind: subject`` and the text."""
        text = " ".join(f"{alert.kind}: {alert.subject} -- {alert.text}".split())
        return syslog_message(_ALERT_PRI, self.hostname, ALERT_MSGID, text)

    def context(self) -> ssl.SSLContext:
        """A context verifying the server and its name, showing our client certificate if there is one."""
        settings = self.settings
        context = ssl.create_default_context(cafile=settings.syslog_ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if settings.syslog_cert_file:
            context.load_cert_chain(settings.syslog_cert_file, settings.syslog_key_file)
        elif self._identity is not None and self._identity[0].exists():
            context.load_cert_chain(*self._identity)
        return context

    def send(self, messages: Sequence[bytes]) -> None:
        """Send `messages` over one connection and close it; raise OSError unless the server read them all."""
        context = self.context()
        host, port = self.settings.syslog_host, self.settings.syslog_port
        with (
            socket.create_connection((host, port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            _still_open(tls)
            tls.sendall(b"".join(frame(message) for message in messages))
            _close(tls)


def _still_open(tls: ssl.SSLSocket) -> None:
    """Raise ConnectionError if the server closes the connection just after the handshake.

    In TLS 1.3 the client's handshake ends before the server has checked the client's
    certificate; a server that refuses it (rsyslog's ``PermittedPeer``) then just closes,
    and a batch sent at once would look delivered.
    """
    tls.settimeout(REFUSAL_WAIT)
    try:
        data = tls.recv(1)
    except TimeoutError:
        return
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
        data = b""
    finally:
        tls.settimeout(TIMEOUT)
    raise ConnectionError(
        "the syslog server closed the connection after the TLS handshake (does it accept our certificate?)"
        if not data
        else "the syslog server sent data, which RFC 5425 servers do not"
    )


def _close(tls: ssl.SSLSocket) -> None:
    """Close the TLS session and wait for the server's answer: its close_notify, or its end of the stream.

    The server reads in order, so once it closes its side it has read everything before our
    close_notify. A reset instead means it may not have: that is an error.
    """
    try:
        tls.unwrap()
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        return
