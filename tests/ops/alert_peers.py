"""Real peers of the alert tests: an aiosmtpd SMTP server and an rsyslogd over TLS, both on 127.0.0.1.

Their certificates come from a CA of the test (:func:`peer_pki`), issued for ``127.0.0.1``; the
SMTP server takes STARTTLS or implicit TLS and requires AUTH; rsyslogd (with rsyslog-gnutls)
listens with imtcp's gtls driver and writes what it receives to a file.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from pacs.core import pki
from tests.core.pki_helpers import write_issued

RSYSLOGD = Path("/usr/sbin/rsyslogd")
SMTP_USER, SMTP_PASSWORD = "pacs-alerts", "s3cret-for-smtp"
WAIT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PeerPki:
    """The test's CA and a server certificate for 127.0.0.1 it issued, on disk."""

    ca: Path
    cert: Path
    key: Path
    issued: pki.Issued


def peer_pki(directory: Path, name: str = "127.0.0.1") -> PeerPki:
    """A new CA in `directory` and a server certificate for `name` (default 127.0.0.1) signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = pki.create_ca("Alert test CA")
    pki.write_certificate(directory / "ca.crt", ca.cert)
    cert, key = write_issued(directory, "server", pki.issue_server_cert(ca, name))
    return PeerPki(directory / "ca.crt", cert, key, ca)


@dataclass
class Mailbox:
    """What the server received: messages, logins, AUTH attempts. It refuses subjects with "refuse me"."""

    messages: list[Message] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    auth_attempts: int = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """Keep the message (aiosmtpd's hook)."""
        message = message_from_bytes(envelope.original_content or b"")
        if "refuse me" in str(message["Subject"]):
            return "550 5.7.1 refused by the test's server"
        self.messages.append(message)
        self.tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 OK"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """Accept only the test's user and password (counting every attempt)."""
        self.auth_attempts += 1
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        if good:
            self.logins.append(SMTP_USER)
        return AuthResult(success=good, handled=False)

    def wait_for(self, count: int) -> list[Message]:
        """The messages once there are `count` of them (fails after a while)."""
        deadline = time.monotonic() + WAIT
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)


class _ImplicitTlsController(Controller):
    """aiosmtpd's controller, checking readiness without TLS of its own (the server speaks TLS at once)."""

    def _trigger_server(self) -> None:
        context = ssl.create_default_context(cafile=self._test_ca)
        context.check_hostname = False  # a readiness probe; the tests check names with the client they test
        with (
            socket.create_connection((self.hostname, self.port), 2.0) as raw,
            context.wrap_socket(raw, server_hostname=self.hostname) as tls,
        ):
            tls.recv(1024)


@contextmanager
def smtp_server(peer: PeerPki, *, implicit: bool) -> Iterator[tuple[int, Mailbox]]:
    """An SMTP server on 127.0.0.1 requiring AUTH over TLS: implicit TLS, or STARTTLS if not `implicit`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(peer.cert, peer.key)
    mailbox = Mailbox()
    port = free_port()
    options: dict[str, Any] = {"authenticator": mailbox.authenticate, "auth_required": True}
    if implicit:  # aiosmtpd offers AUTH over TLS only after STARTTLS unless told the session is TLS already
        options["auth_require_tls"] = False
        controller: Controller = _ImplicitTlsController(
            mailbox, hostname="127.0.0.1", port=port, ssl_context=context, server_kwargs=options
        )
        controller._test_ca = str(peer.ca)  # type: ignore[attr-defined]
    else:
        options |= {"tls_context": context, "require_starttls": True}
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, server_kwargs=options)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="64k"
       DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{ca}"
       DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.AuthMode="{auth}" {peers})
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="line" type="string" string="%msgid% %hostname% %pri% %msg%\\n")
*.* action(type="omfile" file="{out}" template="line")
"""


@dataclass
class Rsyslog:
    """A running rsyslogd and the file it writes what it receives to."""

    port: int
    out: Path
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        """The messages received so far, one line each."""
        return self.out.read_text(encoding="utf-8").splitlines() if self.out.exists() else []

    def wait_for(self, count: int, msgid: str = "") -> list[str]:
        """The received lines (of `msgid`, if given) once there are `count` of them (fails after a while)."""
        deadline = time.monotonic() + WAIT
        while True:
            found = [line for line in self.lines() if line.startswith(msgid)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop rsyslogd (SIGTERM) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=WAIT)


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return process.poll() is not None


def start_rsyslog(
    directory: Path, peer: PeerPki, *, port: int = 0, peer_name: str = "", client_ca: Path | None = None
) -> Rsyslog:
    """rsyslogd in the foreground with its own config in `directory`, TLS on 127.0.0.1 (`port`: a free one).

    `peer_name` requires a client certificate naming it (AuthMode x509/name), issued by `client_ca`
    (or the peer's CA); empty: anonymous clients.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "work").mkdir(exist_ok=True)
    trusted = directory / "trusted.pem"
    trusted.write_text(peer.ca.read_text() + (client_ca.read_text() if client_ca else ""))
    port = port or free_port()
    peers = f'PermittedPeer=["{peer_name}"]' if peer_name else ""
    conf = directory / "rsyslog.conf"
    conf.write_text(
        RSYSLOG_CONF.format(
            work=directory / "work",
            ca=trusted,
            cert=peer.cert,
            key=peer.key,
            auth="x509/name" if peer_name else "anon",
            peers=peers,
            port=port,
            out=directory / "received.log",
        )
    )
    log = directory / "rsyslogd.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [str(RSYSLOGD), "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + WAIT
    while not _listening(port, process) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is not None:
        raise RuntimeError(f"rsyslogd exited: {log.read_text()}")
    return Rsyslog(port, directory / "received.log", process, log)
