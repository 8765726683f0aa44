"""Helpers of the ingest crash tests: real processes, started and ended by the test.

- :func:`pacs` runs the real command line; :func:`create_archive` makes an archive and enrols a node with it.
- :func:`serving` runs ``pacs serve`` in a session of its own, so that :meth:`Served.kill` can SIGKILL the
  whole process tree at once, as a power cut or the OOM killer would.
- :class:`StorescuPush` runs dcmtk's ``storescu -d`` and parses every C-STORE response it reports, so a test
  knows exactly which SOP instances the peer saw acknowledged, and with which status.
- :class:`PostgresCluster` is a throwaway PostgreSQL cluster that a test can stop and start again on the
  same port and data directory.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pydicom

from tests.conftest import REPO, NodeFiles, _answers, _free_port

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
PROCESSING_FAILURE = 0x0110
# Environment of `pacs` processes: nothing of the caller's PACS_* settings leaks in.
_BASE_ENV = {key: value for key, value in os.environ.items() if not key.startswith("PACS_")}


# -- the command line -------------------------------------------------------------------------------


def pacs(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``pacs ARGS`` (this tree's) and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "pacs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=_BASE_ENV,
    )


def pacs_ok(*args: str, timeout: float = 120) -> str:
    """Run ``pacs ARGS``, assert it succeeded, and return its standard output."""
    done = pacs(*args, timeout=timeout)
    command = " ".join(args[:2])
    assert done.returncode == 0, f"pacs {command} exited {done.returncode}: {done.stderr or done.stdout}"
    return done.stdout


@dataclass(frozen=True)
class ArchiveDir:
    """A data directory made by ``pacs init``, and the node enrolled with it."""

    data: Path
    node: NodeFiles


def create_archive(root: Path, db_url: str = "") -> ArchiveDir:
    """``pacs init`` in `root`/data (on `db_url`, or SQLCipher) and enrol CT1 from 127.0.0.1."""
    data = root / "data"
    pacs_ok("init", "--data", str(data), *(["--db", db_url] if db_url else []))
    node = NodeFiles("CT1", root / "ct1")
    enrol = ["modality", "add", "CT1", "--host", "127.0.0.1", "--issue-cert", str(node.directory)]
    pacs_ok(*enrol, "--data", str(data))
    return ArchiveDir(data, node)


def audit_records(data: Path) -> list[dict[str, Any]]:
    """The audit trail as ``pacs audit export --format jsonl`` prints it."""
    out = pacs_ok("audit", "export", "--format", "jsonl", "--data", str(data))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# -- pacs serve as a process group ------------------------------------------------------------------


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies do not count)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


@dataclass
class Served:
    """A running ``pacs serve``, leader of its own process group."""

    process: subprocess.Popen[str]
    log: Path
    port: int
    web_port: int

    @property
    def running(self) -> bool:
        """Whether the ``pacs serve`` process itself is still running."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL every process of the service at once, and wait until all are gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        assert wait_until(lambda: not _group_alive(self.process.pid), 30), "pacs serve outlived SIGKILL"

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, as the service manager stops it; return its exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"pacs serve did not stop within {timeout:.0f} s of SIGTERM") from None

    def log_tail(self, lines: int = 30) -> str:
        """The end of its standard error, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _await_banner(process: subprocess.Popen[str], log: Path, timeout: float) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if readable:
            line = process.stdout.readline()
            if "DICOM TLS listening" in line:
                return
            if not line:
                break
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    status = process.poll()
    raise AssertionError(
        f"pacs serve did not start (exit status {status}):\n" + log.read_text(errors="replace")[-3000:]
    )


@contextmanager
def serving(
    archive: ArchiveDir, log: Path, env: Mapping[str, str] | None = None, *, start_timeout: float = 90
) -> Iterator[Served]:
    """Run ``pacs serve`` on free ports of 127.0.0.1 until the block ends (then SIGKILL what is left)."""
    port, web_port = _free_port(), _free_port()
    environment = {
        **_BASE_ENV,
        "PACS_DICOM_PORT": str(port),
        "PACS_DICOM_BIND": "127.0.0.1",
        "PACS_WEB_PORT": str(web_port),
        "PACS_WEB_BIND": "127.0.0.1",
        **(env or {}),
    }
    with open(log, "a") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pacs", "serve", "--data", str(archive.data)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=environment,
            cwd=REPO,
            start_new_session=True,
        )
    served = Served(process, log, port, web_port)
    try:
        _await_banner(process, log, start_timeout)
        yield served
    finally:
        served.kill()
        if process.stdout is not None:
            process.stdout.close()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout` seconds passed; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# -- dcmtk storescu with its responses --------------------------------------------------------------


@dataclass(frozen=True)
class StoreResponse:
    """One C-STORE response as storescu reported it."""

    sop_uid: str
    status: int


_FIELD = re.compile(
    r"^D: (Message Type|Message ID Being Responded To|Message ID|Affected SOP Instance UID|DIMSE Status)"
    r"\s*: (.*\S)"
)
_STATUS = re.compile(r"0x([0-9a-fA-F]{4})")
UNREADABLE_STATUS = -1


class StorescuPush:
    """``/usr/bin/storescu +tls -d`` sending `files` in one association, its responses parsed as they come.

    storescu's debug log shows every DIMSE message: the C-STORE RQ with its Message ID and
    Affected SOP Instance UID, and each C-STORE RSP with the Message ID it answers and its
    DIMSE Status. A response is matched to the request it answers by Message ID.
    """

    def __init__(self, node: NodeFiles, port: int, files: Sequence[Path], *options: str) -> None:
        command = [
            "/usr/bin/storescu",
            *node.tls_args(),
            "-aet",
            node.ae_title,
            "-aec",
            "PACS",
            "-d",
            "-R",
            *options,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ]
        self._lock = threading.Lock()
        self._responses: list[StoreResponse] = []
        self._requests: dict[str, str] = {}  # Message ID -> SOP Instance UID
        self._tail: deque[str] = deque(maxlen=40)
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=DCMTK_ENV
        )
        self._reader = threading.Thread(target=self._read, name="storescu-log", daemon=True)
        self._reader.start()

    def __enter__(self) -> StorescuPush:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _read(self) -> None:
        assert self.process.stdout is not None
        message: dict[str, str] | None = None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if not line.startswith("D:   "):
                self._tail.append(line)
            if "INCOMING DIMSE MESSAGE" in line or "OUTGOING DIMSE MESSAGE" in line:
                message = {}
            elif "END DIMSE MESSAGE" in line and message is not None:
                self._take(message)
                message = None
            elif message is not None and (match := _FIELD.match(line)):
                message[match[1]] = match[2]

    def _take(self, fields: dict[str, str]) -> None:
        kind = fields.get("Message Type")
        with self._lock:
            if kind == "C-STORE RQ":
                self._requests[fields.get("Message ID", "")] = fields.get("Affected SOP Instance UID", "")
            elif kind == "C-STORE RSP":
                found = _STATUS.match(fields.get("DIMSE Status", ""))
                status = int(found[1], 16) if found else UNREADABLE_STATUS
                answered = fields.get("Message ID Being Responded To", "")
                uid = self._requests.get(answered) or fields.get("Affected SOP Instance UID", "")
                self._responses.append(StoreResponse(uid, status))

    @property
    def running(self) -> bool:
        """Whether storescu is still running."""
        return self.process.poll() is None

    def responses(self) -> list[StoreResponse]:
        """The C-STORE responses storescu reported so far, in order."""
        with self._lock:
            return list(self._responses)

    def acknowledged(self) -> set[str]:
        """The SOP Instance UIDs that storescu saw answered with Success."""
        return {r.sop_uid for r in self.responses() if r.status == SUCCESS}

    def wait(self, timeout: float) -> int:
        """Wait for storescu to end and return its exit status; after `timeout` s kill it and fail."""
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            message = f"storescu still running after {timeout:.0f} s:\n{self.log_tail()}"
            raise AssertionError(message) from None
        self._reader.join(timeout=10)
        return status

    def close(self) -> None:
        """Kill storescu if it still runs and collect it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def log_tail(self) -> str:
        """storescu's last log lines (without the hex and context dumps), for failure messages."""
        return "\n".join(self._tail)


# -- objects --------------------------------------------------------------------------------------


def sop_uid_of(path: Path) -> str:
    """The SOP Instance UID of a DICOM file."""
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def study_uid_of(path: Path) -> str:
    """The Study Instance UID of a DICOM file."""
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def after_file_meta(part10: bytes) -> bytes:
    """The data set of a DICOM Part 10 file: what follows the preamble and the group 0002 elements.

    The archive writes its own file meta (it received a data set, not a file), so two copies
    of one object are compared on these bytes.
    """
    assert part10[128:132] == b"DICM", "not a DICOM Part 10 file"
    stream = io.BytesIO(part10)
    stream.seek(132)
    while True:
        start = stream.tell()
        group = int.from_bytes(stream.read(2), "little")
        if group != 0x0002:
            return part10[start:]
        stream.read(2)  # element
        vr = stream.read(2)
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            stream.read(2)
            length = int.from_bytes(stream.read(4), "little")
        else:
            length = int.from_bytes(stream.read(2), "little")
        stream.seek(length, io.SEEK_CUR)


# -- a throwaway PostgreSQL cluster -----------------------------------------------------------------


class PostgresCluster:
    """A PostgreSQL cluster of its own (Debian's binaries, run as user postgres when we are root).

    Unlike the session's server it may be stopped mid-test (:meth:`stop`) and started again
    on the same port and data directory (:meth:`start`).
    """

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        assert binaries, "this test needs PostgreSQL's server binaries (apt-get install postgresql)"
        self.bindir = Path(binaries[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="pacs-pg-outage-"))
        self.data, self.sockets = self.root / "pgdata", self.root / "sock"
        self.sockets.mkdir()
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sockets, "postgres")
            self._as = {"user": "postgres", "group": "postgres", "extra_groups": []}
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [str(self.bindir / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(self.data)],
            check=True,
            capture_output=True,
            cwd=self.root,
            **self._as,
        )

    @property
    def url(self) -> str:
        """The server's URL, without a database name."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        """Start the server (again) and wait until it answers."""
        assert self.process is None, "already running"
        command = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        command += ["-k", str(self.sockets), "-c", "listen_addresses=127.0.0.1"]
        with open(self.root / "server.log", "ab") as log:
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, cwd=self.root, **self._as
            )
        self.process = process
        wait_until(lambda: process.poll() is not None or _answers(self.url), timeout, 0.2)
        if not _answers(self.url):
            raise AssertionError("the throwaway PostgreSQL did not start:\n" + self.server_log())

    def stop(self, signum: int = signal.SIGINT, timeout: float = 60) -> None:
        """Stop the server (SIGINT: fast shutdown, every session is disconnected) and wait for it."""
        if self.process is None:
            return
        self.process.send_signal(signum)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def create_database(self, name: str) -> str:
        """Create database `name`; return its URL."""
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def server_log(self) -> str:
        """The end of the server's log."""
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def remove(self) -> None:
        """Stop the server and delete the cluster."""
        self.stop(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
