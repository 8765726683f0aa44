"""Signed checkpoints of the audit trail, written where the service account cannot rewrite them.

The anchor file (:mod:`pacs.core.audit`) catches rows cut off the end of the trail by someone
with database access alone. Someone with the service account's rights can also put back
an older anchor, and holds the audit key. A checkpoint is a line naming the archive, the
time, the newest record's sequence number and chain hash, MACed with a key derived from
the first key-encryption key; ``pacs serve`` sends one at start, every
``[audit] checkpoint_minutes`` and at stop to the local syslog socket (journald or
rsyslog, whose files the service account cannot write) and optionally to a remote syslog
server over TLS (RFC 5425). :func:`check_trail` compares the trail with the checkpoints
found in a copy of that log (``pacs audit verify --checkpoint FILE``): a trail shorter than
a checkpoint, or whose record at a checkpointed number has another hash, was rolled back
or rewritten.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from logging.handlers import SysLogHandler
from pathlib import Path
from typing import Protocol

from pacs.core.audit import GENESIS, AuditLog
from pacs.core.config import Settings
from pacs.core.context import CA_CERT, SERVER_CERT, SERVER_KEY, Context
from storage.keys import KeyRing

LOG = logging.getLogger(__name__)
TAG = "PACS-AUDIT-CHECKPOINT"
KEY_PURPOSE = "pacs audit checkpoint v1"
IDENTITY_PURPOSE = "pacs archive identity v1"
SEND_TIMEOUT = 10.0
# RFC 5424 PRI of the remote messages: facility authpriv (10), severity info (6).
_PRI = 10 * 8 + 6
_LINE = re.compile(
    TAG + r" v1 archive=(?P<archive>[0-9a-f]{16}) time=(?P<time>\S+) seq=(?P<seq>\d{1,19})"
    r" hash=(?P<hash>[0-9a-f]{64}) mac=(?P<mac>[0-9a-f]{64})"
)
_TAGGED = re.compile(TAG + r" v1 archive=(?P<archive>[0-9a-f]{16})")


@dataclass(frozen=True)
class Checkpoint:
    """Where the trail stood when the checkpoint was taken."""

    archive: str
    time: str
    seq: int
    hash: str


@dataclass
class Scan:
    """The checkpoints of one archive found in a log: the valid ones and the lines that fail their MAC."""

    checkpoints: list[Checkpoint] = field(default_factory=list)
    forged: list[int] = field(default_factory=list)
    other_archives: int = 0


class Signer:
    """Makes and reads the checkpoint lines of one archive (the key is derived from its first KEK)."""

    def __init__(self, keyring: KeyRing) -> None:
        self._key = keyring.derive(KEY_PURPOSE, version=1)
        self.archive = keyring.derive(IDENTITY_PURPOSE, version=1)[:8].hex()

    def _mac(self, archive: str, time: str, seq: int, hash_: str) -> str:
        return hmac.new(self._key, f"{TAG}|v1|{archive}|{time}|{seq}|{hash_}".encode(), sha256).hexdigest()

    def line(self, seq: int, hash_: str, now: datetime | None = None) -> str:
        """The checkpoint line for a trail whose newest record is (seq, hash)."""
        time = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
        mac = self._mac(self.archive, time, seq, hash_)
        return f"{TAG} v1 archive={self.archive} time={time} seq={seq} hash={hash_} mac={mac}"

    def scan(self, lines: Iterable[str]) -> Scan:
        """Find this archive's checkpoints in `lines` (syslog or journal text, any prefix)."""
        scan = Scan()
        for number, text in enumerate(lines, start=1):
            tagged = _TAGGED.search(text)
            if tagged is None:
                continue
            if tagged["archive"] != self.archive:
                scan.other_archives += 1
                continue
            match = _LINE.search(text)
            if match is None or not hmac.compare_digest(
                match["mac"], self._mac(self.archive, match["time"], int(match["seq"]), match["hash"])
            ):
                scan.forged.append(number)
                continue
            scan.checkpoints.append(Checkpoint(self.archive, match["time"], int(match["seq"]), match["hash"]))
        return scan


def check_trail(audit: AuditLog, scan: Scan, source: str) -> list[str]:
    """Why the trail does not hold what the checkpoints in `scan` saw (empty: it does)."""
    problems = [
        f"{source} line {n}: a checkpoint line of this archive with a bad MAC (forged)" for n in scan.forged
    ]
    if not scan.checkpoints:
        problems.append(f"{source} holds no checkpoint of this archive: nothing to compare the trail with")
        return problems
    newest = audit.newest()
    last_seq = newest[0] if newest else 0
    top = max(scan.checkpoints, key=lambda c: c.seq)
    if top.seq > last_seq:
        problems.append(
            f"the trail ends at record {last_seq}, but the checkpoint of {top.time} saw record {top.seq}: "
            f"records {last_seq + 1}..{top.seq} were removed (rolled back)"
        )
    seen = {(c.seq, c.hash): c for c in scan.checkpoints if 0 < c.seq <= last_seq}
    hashes = audit.hashes_at(seq for seq, _ in seen)
    for (seq, hash_), checkpoint in sorted(seen.items()):
        held = hashes.get(seq)
        if held is None:
            problems.append(f"record {seq}, seen by the checkpoint of {checkpoint.time}, is missing")
        elif held != hash_:
            problems.append(
                f"record {seq} is not the record the checkpoint of {checkpoint.time} saw: "
                "the trail was rewritten from there"
            )
    return problems


class Sink(Protocol):
    """Somewhere a checkpoint line goes."""

    name: str

    def send(self, line: str) -> None:
        """Deliver `line`; raise OSError (or ssl.SSLError) when it cannot."""


class _RaisingSysLogHandler(SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        raise  # the error being handled reaches LocalSyslog.send's caller


class LocalSyslog:
    """The local syslog socket (``/dev/log``: journald or rsyslog), reconnected for every line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"syslog socket {path}"

    def send(self, line: str) -> None:
        """Send `line` as one message tagged ``pacs`` (facility authpriv)."""
        handler = _RaisingSysLogHandler(address=self.path, facility=SysLogHandler.LOG_AUTHPRIV)
        try:
            handler.ident = "pacs: "
            handler.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))
        finally:
            handler.close()


# The project's TLS client policy (pacs.core.tls.client_context): our certificate, key, trusted PEM.
ClientContext = Callable[[Path, Path, str], ssl.SSLContext]


class RemoteSyslog:
    """A syslog server over TLS (RFC 5425): one connection per line, octet-counted RFC 5424 frames.

    The server's certificate must chain to `ca` and name `host`; we present the archive's
    server certificate as our client certificate (RFC 5425 section 5 authenticates both ends).
    """

    def __init__(self, settings: Settings, client_context: ClientContext) -> None:
        host, _, port = settings.audit.remote_syslog.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.name = f"remote syslog {settings.audit.remote_syslog}"
        self._settings = settings
        self._client_context = client_context

    def _context(self) -> ssl.SSLContext:
        settings = self._settings
        ca = Path(settings.audit.remote_syslog_ca or settings.tls_dir / CA_CERT)
        context = self._client_context(
            settings.tls_dir / SERVER_CERT, settings.key_dir / SERVER_KEY, ca.read_text(encoding="ascii")
        )
        context.check_hostname = True
        return context

    def send(self, line: str) -> None:
        """Connect, check the server's certificate, send `line` in one frame and close."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        hostname = self._settings.server.hostname
        message = f"<{_PRI}>1 {now} {hostname} pacs {os.getpid()} checkpoint - {line}".encode()
        context = self._context()
        with (
            socket.create_connection((self.host, self.port), timeout=SEND_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=self.host) as tls,
        ):
            tls.sendall(f"{len(message)} ".encode() + message)
            tls.unwrap()


def write_checkpoint(audit: AuditLog, signer: Signer, sinks: Sequence[Sink]) -> str:
    """Checkpoint the trail's newest record to every sink; return the line.

    A sink that fails is reported on standard error; when none took the line, the line
    itself goes to standard error, which systemd and container runtimes also keep.
    """
    newest = audit.newest()
    line = signer.line(*(newest or (0, GENESIS)))
    delivered = 0
    for sink in sinks:
        try:
            sink.send(line)
            delivered += 1
        except (OSError, ValueError) as exc:
            LOG.warning("audit checkpoint not written to %s: %s", sink.name, exc)
    if not delivered:
        print(line, file=sys.stderr, flush=True)
    return line


def sinks(settings: Settings, client_context: ClientContext) -> list[Sink]:
    """Where `settings` send checkpoints: the local syslog socket and the remote server, if set."""
    found: list[Sink] = []
    if settings.audit.syslog_socket:
        found.append(LocalSyslog(settings.audit.syslog_socket))
    if settings.audit.remote_syslog:
        found.append(RemoteSyslog(settings, client_context))
    return found


def checkpoint_now(pacs: Context, client_context: ClientContext) -> None:
    """Write one checkpoint of `pacs` now, unless ``[audit] checkpoint_minutes`` is 0."""
    if pacs.settings.audit.checkpoint_minutes:
        write_checkpoint(pacs.audit, Signer(pacs.keyring), sinks(pacs.settings, client_context))


def checkpoint_loop(pacs: Context, client_context: ClientContext) -> CheckpointLoop | None:
    """The checkpoint thread of `pacs` (None when ``[audit] checkpoint_minutes`` is 0)."""
    minutes = pacs.settings.audit.checkpoint_minutes
    if not minutes:
        return None
    signer = Signer(pacs.keyring)
    return CheckpointLoop(pacs.audit, signer, sinks(pacs.settings, client_context), interval=minutes * 60.0)


class CheckpointLoop:
    """A thread of ``pacs serve``: a checkpoint at start, every `interval` seconds, and one at stop."""

    def __init__(self, audit: AuditLog, signer: Signer, sinks: Sequence[Sink], *, interval: float) -> None:
        self._audit, self._signer, self._sinks = audit, signer, sinks
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-checkpoints", daemon=True)

    def start(self) -> None:
        """Write the first checkpoint and go on in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and write a last checkpoint (of the records written until now)."""
        self._stop.set()
        self._thread.join(timeout=3 * SEND_TIMEOUT)
        self._write()

    def _run(self) -> None:
        self._write()
        while not self._stop.wait(self._interval):
            self._write()

    def _write(self) -> None:
        try:
            write_checkpoint(self._audit, self._signer, self._sinks)
        except Exception:
            LOG.exception("the audit checkpoint failed; the next one is due in %.0f s", self._interval)
