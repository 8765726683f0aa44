"""Network ingest: dcmtk ``storescu`` pushing a CT series over mutual TLS into ``pacs serve``.

What is measured
----------------
1. A synthetic CT series (default 500 slices of 512x512, about 0.5 MB per file, from
   ``tests/data/make_series.py``) is written once into a temporary directory.
2. Ours: ``pacs init`` of a fresh data directory (encrypted SQLite by default; with
   ``--db postgresql`` a new ``bench_<random>`` database, dropped at the end), ``pacs modality
   add AE --host 127.0.0.1 --issue-cert DIR``, then ``pacs serve`` as a subprocess on a free
   port of 127.0.0.1 (``PACS_DICOM_PORT``, ``PACS_DICOM_BIND``; the web viewer on another). Once it prints its
   "listening" line, dcmtk ``/usr/bin/storescu +tls client.key client.crt +cf ca.crt``
   (``TCP_NODELAY=1``) pushes the whole series in one association. A C-STORE is answered
   only after the object is encrypted, fsynced and indexed. After the server has stopped,
   its index is opened and the instance rows are counted.
3. Baseline in the same run: dcmtk ``storescp +tls`` with a certificate from a throwaway CA,
   client certificates required (``-rc``), writing plain files (no index, no encryption,
   no fsync) into a temporary directory: the TLS/DIMSE ceiling of this client here.
4. Orthanc (Debian's package), if installed and if we are root: Orthanc cannot bind to
   loopback only, so it runs in its own network namespace ``pacsbench`` behind a veth pair
   10.200.0.1 (here) / 10.200.0.2 (there), MTU 65535 like loopback, with DICOM TLS and
   mutual authentication (``DicomTlsRemoteCertificateRequired``), ``SyncStorageArea``
   (fsync) on, HTTP off, storage and index in a temporary directory. The same push goes from
   this namespace to 10.200.0.2. ``storescp`` is run in the namespace too
   ("storescp via veth") to show what the veth hop itself costs. The namespace and the veth
   pair are removed at the end, whatever happens.
5. Concurrency: a fresh ``pacs serve`` with N enrolled AEs (``--concurrency``, default 4)
   and N storescu processes started together, each pushing a contiguous share of the
   series (125 slices each by default); aggregate objects/s = all successes over the wall
   time until the last one finished. The same for a fresh Orthanc, for reference.
6. ``--profile``: two more single-association pushes into fresh servers while
   ``py-spy record`` samples them at 100 Hz, separate from the measured runs (sampling
   slows the server down). "wall": every thread, idle included; the association's two
   pynetdicom threads (acceptor/C-STORE handler and DUL socket reader) are reported with
   their top functions in % and in ms per object, which add up to the per-object latency.
   "gil": only the thread holding the GIL, i.e. where the Python CPU goes.
7. ``--repeat N`` runs every case N times, interleaved, and reports the median run and the
   min..max range (virtual disks and 2-vCPU machines are noisy).

Every dcmtk process (client and servers) gets ``TCP_NODELAY=1``, without which dcmtk
stalls about 40 ms per object. Figures per row: objects/s and MB/s (10^6 bytes of the
files pushed), the ratio to loopback storescp, server CPU (process CPU time over wall
time, 100% = one core; and CPU ms per object), the server's peak RSS (VmHWM from
/proc/<pid>/status; for ``pacs serve``, summed over it and its DICOM worker processes,
one per core by default) and the max PDV the server granted. Objects are counted from
storescu's "Received Store Response (Success)" lines.

Target (from the issue): ours >= 1.3x Orthanc, measured in the same run, over mutual TLS
with encryption and fsync (~130 objects/s on the 2-core reference machine, where Orthanc
does ~100/s; that absolute figure is used when Orthanc is skipped). The script prints
"target met/MISSED"; it never asserts.

Run (as root for the Orthanc rows): ``.venv/bin/python bench/dicom_ingest.py [--slices N]
[--db sqlite|postgresql] [--skip-orthanc] [--concurrency N] [--profile] [--repeat N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy import func, select

from pacs import pki
from pacs.config import load_settings
from pacs.datadir import open_pacs
from storage.db import Instance

ROOT = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
STORESCU = "/usr/bin/storescu"  # never the venv's pynetdicom script of the same name
STORESCP = "/usr/bin/storescp"
ORTHANC = "/usr/sbin/Orthanc"
NETNS = "pacsbench"
VETH_HOST, VETH_NS = "pacsbench0", "pacsbench1"
HOST_ADDR, NS_ADDR = "10.200.0.1", "10.200.0.2"
ORTHANC_PORT = 4242
TARGET_RATIO = 1.3
REFERENCE_TARGET = 130.0  # objects/s on the 2-core reference machine (1.3x Orthanc's ~100/s)
MB = 1_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A case could not run; the message says why, and the row shows it."""


@dataclass
class Push:
    """The figures of one push (one or several storescu processes) into one server."""

    label: str
    objects: int
    nbytes: int
    seconds: float = 0.0
    succeeded: int = 0
    server_cpu: float = 0.0
    peak_rss_kb: int = 0
    pdv: str = ""
    note: str = ""
    failed: str = ""
    kind: str = ""  # "ours", "orthanc", "storescp"
    client_seconds: list[float] = field(default_factory=list)

    @property
    def objects_per_s(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        share = self.nbytes * self.succeeded / self.objects if self.objects else 0
        return share / MB / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------------------
# Small helpers: ports, /proc, processes
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """`pid` and its child processes (``pacs serve`` forks its DICOM workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            children += [int(child) for child in (task / "children").read_text().split()]
    return [pid, *children]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` and its children so far, from /proc/<pid>/stat."""
    total = 0.0
    for member in process_tree(pid):
        with suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def peak_rss_kb(pid: int) -> int:
    """VmHWM (peak resident set size) of process `pid`, summed with its children's, in kB."""
    total = 0
    for member in process_tree(pid):
        with suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


def listening(pid: int, port: int) -> bool:
    """Whether a socket in LISTEN state on `port` exists in the network namespace of `pid`."""
    for name in ("tcp", "tcp6"):
        with suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def tail(path: Path, lines: int = 3) -> str:
    with suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])
    return ""


@contextmanager
def server_process(
    command: Sequence[str], log: Path, *, port: int, env: dict[str, str], ready_text: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends; ready when it listens on `port` (and logged `ready_text`)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchError(f"{Path(command[0]).name} exited with {proc.returncode}: {tail(log)}")
            text_ok = not ready_text or ready_text in log.read_text(errors="replace")
            if text_ok and listening(proc.pid, port):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{Path(command[0]).name} did not start listening: {tail(log)}")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(command: Sequence[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise BenchError(f"{what} failed: {message[-1] if message else result.returncode}")
    return result.stdout


# ---------------------------------------------------------------------------
# The client: dcmtk storescu
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """Key, certificate and trust anchor for one side of a mutual-TLS connection."""

    key: Path
    cert: Path
    ca: Path

    def dcmtk(self) -> list[str]:
        return ["+tls", str(self.key), str(self.cert), "+cf", str(self.ca)]


def storescu_command(
    tls: Tls, calling: str, called: str, host: str, port: int, files: Sequence[Path]
) -> list[str]:
    return [STORESCU, "-v", *tls.dcmtk(), "-aet", calling, "-aec", called, host, str(port), *map(str, files)]


def summarise_storescu(log: Path) -> tuple[int, str, str]:
    """(successes, max PDV granted, a note on anything but success) from a storescu -v log."""
    text = log.read_text(errors="replace")
    responses = Counter(re.findall(r"Received Store Response \(([^)]*)\)", text))
    pdv = re.search(r"Max Send PDV: (\d+)", text)
    problems = [f"{count} {status}" for status, count in responses.items() if status != "Success"]
    problems += [line for line in text.splitlines() if line.startswith(("F:", "E:"))][:2]
    return responses.get("Success", 0), pdv.group(1) if pdv else "", "; ".join(problems)


def push(
    label: str,
    server: subprocess.Popen[bytes],
    clients: Sequence[tuple[Tls, str]],
    called: str,
    host: str,
    port: int,
    files: Sequence[Path],
    logdir: Path,
    kind: str,
) -> Push:
    """Push `files` split over `clients` (one storescu each, all at once) and measure."""
    size = -(-len(files) // len(clients))
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    result = Push(label, len(files), sum(path.stat().st_size for path in files), kind=kind)
    os.sync()  # earlier runs' dirty pages must not be written back during this one
    cpu = cpu_seconds(server.pid)
    procs: list[tuple[subprocess.Popen[bytes], Path, float]] = []
    start = time.perf_counter()
    try:
        for number, ((tls, calling), chunk) in enumerate(zip(clients, chunks, strict=False)):
            log = logdir / f"storescu-{kind}-{secrets.token_hex(3)}-{number}.log"
            with open(log, "wb") as out:
                command = storescu_command(tls, calling, called, host, port, chunk)
                proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            procs.append((proc, log, 0.0))
        for index, (proc, log, _) in enumerate(procs):
            proc.wait()
            procs[index] = (proc, log, time.perf_counter() - start)
    finally:
        for proc, _, _ in procs:  # only when interrupted
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    result.seconds = time.perf_counter() - start
    result.server_cpu = cpu_seconds(server.pid) - cpu
    result.peak_rss_kb = peak_rss_kb(server.pid)
    notes, pdvs = [], set()
    for proc, log, seconds in procs:
        ok, pdv, note = summarise_storescu(log)
        result.succeeded += ok
        result.client_seconds.append(seconds)
        if pdv:
            pdvs.add(pdv)
        if note or proc.returncode:
            notes.append(f"storescu exit {proc.returncode}: {note}" if proc.returncode else note)
    result.pdv = "/".join(sorted(pdvs))
    if len(procs) > 1:
        fastest, slowest = min(result.client_seconds), max(result.client_seconds)
        notes.append(f"{len(procs)} storescu finished after {fastest:.1f}..{slowest:.1f} s")
    result.note = "; ".join(notes)
    return result


# ---------------------------------------------------------------------------
# Ours: pacs init / modality add / serve, as an admin would run them
# ---------------------------------------------------------------------------


def pacs_command() -> list[str]:
    script = Path(sys.executable).parent / "pacs"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pacs.cli"]


@contextmanager
def database(backend: str, pg_server: str) -> Iterator[str]:
    """'' for the embedded SQLCipher index, or the URL of a new PostgreSQL database (dropped on exit)."""
    if backend != "postgresql":
        yield ""
        return
    name = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_server}/{name}"
    finally:
        with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class OurServer:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    nodes: list[tuple[Tls, str]]


@contextmanager
def our_server(workdir: Path, ae_titles: Sequence[str], backend: str, pg_server: str) -> Iterator[OurServer]:
    """A freshly initialised archive with `ae_titles` enrolled, served by ``pacs serve`` on 127.0.0.1."""
    home = Path(tempfile.mkdtemp(prefix="ours-", dir=workdir))
    data_dir = home / "data"
    pacs = pacs_command()
    try:
        with database(backend, pg_server) as db_url:
            run([*pacs, "init", "--data", str(data_dir), *(["--db", db_url] if db_url else [])], "pacs init")
            nodes = []
            for ae in ae_titles:
                out = home / f"node-{ae}"
                add = [*pacs, "modality", "add", ae, "--host", "127.0.0.1", "--issue-cert", str(out)]
                run([*add, "--data", str(data_dir)], f"pacs modality add {ae}")
                nodes.append((Tls(out / "client.key", out / "client.crt", out / "ca.crt"), ae))
            port = free_port()
            env = {
                **os.environ,
                "PACS_DICOM_PORT": str(port),
                "PACS_DICOM_BIND": "127.0.0.1",
                "PACS_WEB_PORT": str(free_port()),
                "PACS_WEB_BIND": "127.0.0.1",
            }
            command = [*pacs, "serve", "--data", str(data_dir)]
            with server_process(
                command, home / "serve.log", port=port, env=env, ready_text="listening"
            ) as proc:
                yield OurServer(proc, port, data_dir, nodes)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def count_instances(data_dir: Path) -> int:
    """Instance rows in the index of a stopped server."""
    pacs = open_pacs(load_settings(data_dir, {}))
    try:
        with pacs.database.read() as session:
            return int(session.scalar(select(func.count(Instance.id))) or 0)
    finally:
        pacs.close()


def push_ours(
    label: str, workdir: Path, files: Sequence[Path], clients: int, backend: str, pg_server: str
) -> Push:
    ae_titles = [f"BENCHCT{n + 1}" for n in range(clients)]
    with our_server(workdir, ae_titles, backend, pg_server) as server:
        result = push(
            label, server.proc, server.nodes, "PACS", "127.0.0.1", server.port, files, workdir, "ours"
        )
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=120)
        rows = count_instances(server.data_dir)
        check = "index OK" if rows == result.succeeded else f"INDEX HAS {rows} ROWS"
        result.note = "; ".join(filter(None, [f"{rows} instance rows, {check}", result.note]))
    return result


# ---------------------------------------------------------------------------
# Certificates for storescp and Orthanc (a throwaway CA, the same for both)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPki:
    server: Tls
    client: Tls


def make_pki(directory: Path) -> BenchPki:
    directory.mkdir(mode=0o700)
    ca = pki.create_ca("pacs bench CA")
    server = pki.issue_server_cert(ca, "localhost", extra_names=["127.0.0.1", NS_ADDR])
    client = pki.issue_client_cert(ca, "BENCHSCU")
    pki.write_certificate(directory / "ca.crt", ca.cert)
    for name, issued in (("server", server), ("client", client)):
        pki.write_private_key(directory / f"{name}.key", issued.key)
        pki.write_certificate(directory / f"{name}.crt", issued.cert)
    return BenchPki(
        server=Tls(directory / "server.key", directory / "server.crt", directory / "ca.crt"),
        client=Tls(directory / "client.key", directory / "client.crt", directory / "ca.crt"),
    )


def push_storescp(
    label: str, workdir: Path, files: Sequence[Path], certs: BenchPki, netns: str | None = None
) -> Push:
    home = Path(tempfile.mkdtemp(prefix="storescp-", dir=workdir))
    try:
        (home / "out").mkdir()
        port = ORTHANC_PORT + 1 if netns else free_port()
        prefix = ["ip", "netns", "exec", netns] if netns else []
        command = [*prefix, STORESCP, *certs.server.dcmtk(), "-rc", "-od", str(home / "out"), str(port)]
        env = {**os.environ, "TCP_NODELAY": "1"}
        with server_process(command, home / "storescp.log", port=port, env=env) as proc:
            host = NS_ADDR if netns else "127.0.0.1"
            result = push(
                label, proc, [(certs.client, "BENCHSCU")], "STORESCP", host, port, files, home, "storescp"
            )
        written = sum(1 for _ in (home / "out").iterdir())
        result.note = "; ".join(filter(None, [f"{written} files written", result.note]))
        return result
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------
# Orthanc, in a network namespace of its own
# ---------------------------------------------------------------------------


def orthanc_unavailable(skip: bool) -> str:
    """Why the Orthanc rows cannot run ('' when they can)."""
    if skip:
        return "--skip-orthanc"
    if not Path(ORTHANC).exists():
        return f"{ORTHANC} not found (apt-get install orthanc)"
    if os.geteuid() != 0:
        return "a network namespace needs root"
    if not shutil.which("ip"):
        return "no 'ip' command (iproute2)"
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    if re.search(rf"^{NETNS}\b", namespaces, re.MULTILINE):
        return f"network namespace {NETNS} already exists (left over? 'ip netns del {NETNS}')"
    addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    for address in (HOST_ADDR, NS_ADDR):
        if f"inet {address}/" in addresses:
            return f"{address} is already in use on this host"
    if Path(f"/sys/class/net/{VETH_HOST}").exists():
        return f"interface {VETH_HOST} already exists"
    return ""


@contextmanager
def network_namespace() -> Iterator[None]:
    """The namespace with a veth pair HOST_ADDR (here) <-> NS_ADDR (in it); always torn down."""
    commands = [
        ["ip", "netns", "add", NETNS],
        ["ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS],
        ["ip", "link", "set", VETH_NS, "netns", NETNS],
        ["ip", "addr", "add", f"{HOST_ADDR}/30", "dev", VETH_HOST],
        ["ip", "link", "set", VETH_HOST, "mtu", "65535", "up"],
        ["ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{NS_ADDR}/30", "dev", VETH_NS],
        ["ip", "netns", "exec", NETNS, "ip", "link", "set", VETH_NS, "mtu", "65535", "up"],
        ["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"],
    ]
    created_ns = created_link = False
    try:
        for command in commands:
            run(command, " ".join(command))
            created_ns = created_ns or command[1:3] == ["netns", "add"]
            created_link = created_link or command[:3] == ["ip", "link", "add"]
        yield
    finally:
        if created_link:
            subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True, check=False)
        if created_ns:
            subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)


def orthanc_version() -> str:
    result = subprocess.run([ORTHANC, "--version"], capture_output=True, text=True, check=False)
    words = (result.stdout.splitlines() or ["Orthanc ?"])[0].split()
    return f"Orthanc {words[-1]}"


def push_orthanc(label: str, workdir: Path, files: Sequence[Path], certs: BenchPki, clients: int) -> Push:
    home = Path(tempfile.mkdtemp(prefix="orthanc-", dir=workdir))
    try:
        storage, index = home / "storage", home / "index"
        storage.mkdir()
        index.mkdir()
        config = {
            "Name": "pacs-bench",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(index),
            "StorageCompression": False,
            "SyncStorageArea": True,
            "HttpServerEnabled": False,
            "RemoteAccessAllowed": False,
            "Plugins": [],
            "LuaScripts": [],
            "DicomServerEnabled": True,
            "DicomAet": "ORTHANC",
            "DicomPort": ORTHANC_PORT,
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(certs.server.cert),
            "DicomTlsPrivateKey": str(certs.server.key),
            "DicomTlsTrustedCertificates": str(certs.server.ca),
            "DicomTlsRemoteCertificateRequired": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {},
        }
        (home / "orthanc.json").write_text(json.dumps(config, indent=2))
        command = ["ip", "netns", "exec", NETNS, ORTHANC, str(home / "orthanc.json")]
        env = {**os.environ, "TCP_NODELAY": "1"}
        with server_process(command, home / "orthanc.log", port=ORTHANC_PORT, env=env) as proc:
            peers = [(certs.client, f"BENCHCT{n + 1}") for n in range(clients)]
            result = push(label, proc, peers, "ORTHANC", NS_ADDR, ORTHANC_PORT, files, home, "orthanc")
        stored = sum(1 for path in storage.rglob("*") if path.is_file())
        result.note = "; ".join(filter(None, [f"{stored} files in its storage", result.note]))
        return result
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------
# Profile: py-spy on the server during one single-association push
# ---------------------------------------------------------------------------


def py_spy_command() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


PROFILE_RATE = 100  # samples per second
_PLUMBING = {"Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run"}


def profile_ours(
    workdir: Path, files: Sequence[Path], backend: str, pg_server: str, mode: str, top: int
) -> str:
    """A single-association push into a fresh server while py-spy samples it; the report.

    `mode` "wall": every thread, idle or not (``--idle --threads``), reported for the
    association's two pynetdicom threads, so the figures add up to the push's wall time.
    `mode` "gil": only the thread holding the GIL (``--gil``), i.e. where the Python CPU goes.
    """
    spy = py_spy_command()
    if spy is None:
        raise BenchError("py-spy not found")
    raw = workdir / f"py-spy-{mode}.txt"
    flags = ["--idle", "--threads"] if mode == "wall" else ["--gil"]
    with our_server(workdir, ["BENCHCT1"], backend, pg_server) as server:
        command = [spy, "record", "--pid", str(server.proc.pid), "--rate", str(PROFILE_RATE), *flags]
        command += ["--format", "raw", "--nolineno", "--output", str(raw)]
        with open(workdir / "py-spy.log", "wb") as out:
            spy_proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.0)  # let it attach
            node = server.nodes
            result = push(
                "profile", server.proc, node, "PACS", "127.0.0.1", server.port, files, workdir, "ours"
            )
        finally:
            spy_proc.send_signal(signal.SIGINT)
            try:
                spy_proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
                spy_proc.wait()
    if not raw.exists():
        raise BenchError(f"py-spy wrote nothing: {tail(workdir / 'py-spy.log')}")
    samples = parse_collapsed(raw.read_text())
    head = (
        f"py-spy ({mode}), ours, 1 association, {result.succeeded} objects in {result.seconds:.2f} s "
        f"= {result.objects_per_s:.1f}/s while sampled at {PROFILE_RATE} Hz"
    )
    if mode == "wall":
        return head + "\n" + wall_report(samples, result, top)
    return head + "\n" + gil_report(samples, result, top)


def _short(frame: str) -> str:
    """'name (path/to/module.py)' -> 'name (module.py)'."""
    match = re.fullmatch(r"(.*) \((.*)\)", frame)
    if not match:
        return frame
    return f"{match.group(1)} ({Path(match.group(2)).name})"


def parse_collapsed(text: str) -> list[tuple[str, list[str], int]]:
    """(thread name or '', frames outermost first, samples) from py-spy's raw output."""
    samples = []
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        thread = ""
        if frames[0].startswith("thread ("):
            thread = frames.pop(0).split(": ", 1)[-1]
        frames = [_short(frame) for frame in frames]
        samples.append((thread, [f for f in frames if f.split(" (")[0] not in _PLUMBING], int(count_text)))
    return samples


def _tops(samples: Sequence[tuple[str, list[str], int]]) -> tuple[Counter[str], Counter[str], int]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for _, frames, count in samples:
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def wall_report(samples: Sequence[tuple[str, list[str], int]], result: Push, top: int) -> str:
    """Where the wall time of the association's threads goes, in % and ms per object."""
    roles = [
        ("association thread (pynetdicom acceptor: DIMSE, C-STORE handler)", "AcceptorThread"),
        ("DUL thread (pynetdicom: socket reads, PDU decoding, spooling)", "(run_reactor)"),
    ]
    lines = [
        "(own time in Association._run_reactor and DULServiceProvider.run_reactor is mostly their 1 ms",
        " polling sleeps: the thread waiting for the other one or for the network)",
    ]
    for title, marker in roles:
        own, inclusive, total = _tops([s for s in samples if marker in s[0]])
        if not total:
            lines.append(f"no samples of the {title}")
            continue
        per_object = 1000 / PROFILE_RATE / max(result.succeeded, 1)
        lines += ["", f"{title}: {total} samples (idle included)", f"  inclusive (top {top}):"]
        lines += [
            f"    {count / total * 100:5.1f}%  {count * per_object:5.2f} ms/obj  {frame}"
            for frame, count in inclusive.most_common(top)
        ]
        lines.append(f"  own (top {min(top, 10)}):")
        lines += [
            f"    {count / total * 100:5.1f}%  {count * per_object:5.2f} ms/obj  {frame}"
            for frame, count in own.most_common(min(top, 10))
        ]
    return "\n".join(lines) + "\n"


def gil_report(samples: Sequence[tuple[str, list[str], int]], result: Push, top: int) -> str:
    """Which code holds the GIL (one core at most, for every association together)."""
    own, inclusive, total = _tops(samples)
    if not total:
        return "py-spy collected no samples\n"
    busy = total / PROFILE_RATE / result.seconds * 100 if result.seconds else 0
    per_object = 1000 / PROFILE_RATE / max(result.succeeded, 1)
    lines = [
        f"GIL held in {total} samples (~{busy:.0f}% of the push), {total * per_object:.2f} ms per object"
    ]
    lines.append(f"  inclusive (top {top}):")
    lines += [
        f"    {count / total * 100:5.1f}%  {count * per_object:5.2f} ms/obj  {frame}"
        for frame, count in inclusive.most_common(top)
    ]
    lines.append(f"  own (top {top}):")
    lines += [
        f"    {count / total * 100:5.1f}%  {count * per_object:5.2f} ms/obj  {frame}"
        for frame, count in own.most_common(top)
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def make_series(outdir: Path, slices: int, rows: int, columns: int) -> list[Path]:
    """Write the synthetic CT series with the test-suite generator."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.data.make_series import make_ct_series  # needs ROOT on sys.path

    return make_ct_series(
        outdir,
        slices=slices,
        rows=rows,
        columns=columns,
        patient_name="BENCH^NETWORK",
        patient_id="BENCH-0002",
        accession="BENCH0002",
    )


def median_push(runs: Sequence[Push]) -> Push:
    """The run with the median throughput (the lower middle one for an even count); failures rank lowest."""
    ordered = sorted(runs, key=lambda run: (not run.failed, run.objects_per_s))
    return ordered[(len(ordered) - 1) // 2]


def spread(runs: Sequence[Push]) -> str:
    """``min..max`` objects/s over `runs`."""
    rates = [run.objects_per_s for run in runs if not run.failed]
    return f"{min(rates):.0f}..{max(rates):.0f}" if rates else "-"


def print_table(rows: Sequence[tuple[str, Push]], baseline: Push | None, spreads: dict[str, str]) -> None:
    """One line per case; `spreads` (key -> min..max objects/s) adds a 'range' column."""
    columns = [
        ("run", 46),
        ("objects", 8),
        ("seconds", 8),
        ("obj/s", 7),
        *([("range", max(len(value) for value in spreads.values()))] if spreads else []),
        ("MB/s", 6),
        ("x scp", 6),
        ("srv CPU%", 8),
        ("CPU ms/obj", 10),
        ("peak RSS MB", 11),
        ("PDV", 6),
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(columns[0][1])]
        parts += [cell.rjust(width) for cell, (_, width) in zip(cells[1:], columns[1:], strict=True)]
        return " ".join(parts)

    header = line([name for name, _ in columns])
    print(header)
    print("-" * len(header))
    for key, result in rows:
        if result.failed:
            print(line([result.label, *["-"] * (len(columns) - 1)]))
            continue
        ratio = result.objects_per_s / baseline.objects_per_s if baseline and baseline.objects_per_s else 0
        per_object = result.server_cpu / result.succeeded * 1000 if result.succeeded else 0
        cells = [
            result.label,
            f"{result.succeeded}/{result.objects}",
            f"{result.seconds:.2f}",
            f"{result.objects_per_s:.1f}",
            *([spreads.get(key, "-")] if spreads else []),
            f"{result.mb_per_s:.1f}",
            f"{ratio:.2f}" if ratio else "-",
            f"{result.server_cpu / result.seconds * 100 if result.seconds else 0:.0f}",
            f"{per_object:.1f}",
            f"{result.peak_rss_kb / 1024:.0f}",
            result.pdv or "-",
        ]
        print(line(cells))
    print()
    for _, result in rows:
        if result.failed or result.note:
            print(f"  {result.label}: {result.failed or result.note}")


def verdicts(pushes: dict[str, Push], concurrency: int) -> None:
    ours, orthanc = pushes.get("ours"), pushes.get("orthanc")
    print()
    if ours is None or ours.failed or not ours.objects_per_s:
        print("target: no figure for ours")
        return
    if orthanc is not None and not orthanc.failed and orthanc.objects_per_s:
        ratio = ours.objects_per_s / orthanc.objects_per_s
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(
            f"target (single association): ours {ours.objects_per_s:.1f}/s = {ratio:.2f}x Orthanc "
            f"{orthanc.objects_per_s:.1f}/s; >= {TARGET_RATIO}x: target {verdict}"
        )
    else:
        verdict = "met" if ours.objects_per_s >= REFERENCE_TARGET else "MISSED"
        print(
            f"target (single association, no Orthanc figure in this run): ours {ours.objects_per_s:.1f}/s "
            f"vs the reference {REFERENCE_TARGET:.0f}/s: target {verdict}"
        )
    scp, veth = pushes.get("scp"), pushes.get("scp-veth")
    if orthanc and not orthanc.failed and scp and veth and scp.objects_per_s and veth.objects_per_s:
        hop = 1 / veth.objects_per_s - 1 / scp.objects_per_s
        if hop > 0 and orthanc.objects_per_s and 1 / orthanc.objects_per_s > hop:
            loopback = 1 / (1 / orthanc.objects_per_s - hop)
            print(
                f"  the veth hop costs ~{hop * 1000:.2f} ms/object (storescp rows); Orthanc without it would "
                f"be ~{loopback:.0f}/s, and ours {ours.objects_per_s / loopback:.2f}x that"
            )
    ours_n, orthanc_n = pushes.get("ours-n"), pushes.get("orthanc-n")
    if ours_n is not None and not ours_n.failed and ours_n.objects_per_s:
        text = (
            f"concurrency: ours with {concurrency} associations {ours_n.objects_per_s:.1f}/s "
            f"= {ours_n.objects_per_s / ours.objects_per_s:.2f}x its single association"
        )
        if orthanc_n is not None and not orthanc_n.failed and orthanc_n.objects_per_s:
            text += (
                f"; Orthanc {orthanc_n.objects_per_s:.1f}/s; "
                f"ours/Orthanc {ours_n.objects_per_s / orthanc_n.objects_per_s:.2f}x"
            )
        print(text)


def describe_environment(
    workdir: Path, files: Sequence[Path], backend: str, pg_server: str, orthanc: str
) -> None:
    sizes = [path.stat().st_size for path in files]
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"work dir {workdir}")
    print(f"series: {len(files)} files, {sum(sizes) / MB:.1f} MB, {sum(sizes) / len(sizes) / MB:.3f} MB/file")
    dcmtk = subprocess.run([STORESCU, "--version"], capture_output=True, text=True, check=False).stdout
    print(f"client: {(dcmtk.splitlines() or ['?'])[0].strip()} (+tls, TCP_NODELAY=1)")
    print(f"index: {'PostgreSQL at ' + pg_server if backend == 'postgresql' else 'SQLCipher'}")
    print(f"Orthanc: {orthanc}")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--slices", type=int, default=500, help="files in the CT series (default 500)")
    parser.add_argument("--rows", type=int, default=512, help="image rows (default 512)")
    parser.add_argument("--columns", type=int, default=512, help="image columns (default 512)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-server", default=PG_SERVER, help=f"PostgreSQL server URL (default {PG_SERVER})")
    parser.add_argument("--skip-orthanc", action="store_true", help="no Orthanc rows")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="storescu processes of the concurrent push (default 4)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also py-spy two single-association pushes (wall time, GIL)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every case N times, interleaved, and report the median"
    )
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where temp dirs go (default: system temp)"
    )
    args = parser.parse_args(argv)
    for tool in (STORESCU, STORESCP):
        if not Path(tool).exists():
            print(f"{tool} not found (apt-get install dcmtk)", file=sys.stderr)
            return 1

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds: servers stopped, namespace and temp dirs removed

    signal.signal(signal.SIGTERM, terminate)
    workdir = Path(tempfile.mkdtemp(prefix="pacs-bench-dicom-", dir=args.tmp_dir))
    try:
        print(f"generating {args.slices} CT slices of {args.rows}x{args.columns} ...", flush=True)
        files = make_series(workdir / "series", args.slices, args.rows, args.columns)
        why_not = orthanc_unavailable(args.skip_orthanc)
        orthanc = f"skipped: {why_not}" if why_not else orthanc_version()
        describe_environment(workdir, files, args.db, args.pg_server, orthanc)
        certs = make_pki(workdir / "pki")
        nbytes = sum(path.stat().st_size for path in files)
        n, db, pg = args.concurrency, args.db, args.pg_server

        scp = "storescp (TLS, no fsync/index/encryption)"
        veth = "storescp via veth (TLS, no fsync)"
        ours_1, ours_n = f"ours, {db}, 1 association", f"ours, {db}, {n} associations"
        orthanc_1 = f"{orthanc} (mTLS, fsync), 1 association"
        orthanc_n = f"{orthanc} (mTLS, fsync), {n} associations"
        cases: list[tuple[str, str, Callable[[], Push]]] = [
            ("scp", scp, lambda: push_storescp(scp, workdir, files, certs)),
            ("ours", ours_1, lambda: push_ours(ours_1, workdir, files, 1, db, pg)),
        ]
        if n > 1:
            cases.append(("ours-n", ours_n, lambda: push_ours(ours_n, workdir, files, n, db, pg)))
        if not why_not:
            cases += [
                ("scp-veth", veth, lambda: push_storescp(veth, workdir, files, certs, NETNS)),
                ("orthanc", orthanc_1, lambda: push_orthanc(orthanc_1, workdir, files, certs, 1)),
            ]
            if n > 1:
                cases.append(
                    ("orthanc-n", orthanc_n, lambda: push_orthanc(orthanc_n, workdir, files, certs, n))
                )

        results: dict[str, list[Push]] = {key: [] for key, _, _ in cases}
        namespace: AbstractContextManager[None] = network_namespace() if not why_not else nullcontext()
        try:
            with namespace:
                # Repeats are interleaved so that every server sees the same disk conditions.
                for repeat in range(args.repeat):
                    for key, label, case in cases:
                        print(f"[{repeat + 1}/{args.repeat}] {label} ...", flush=True)
                        try:
                            results[key].append(case())
                        except (BenchError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
                            results[key].append(Push(label, len(files), nbytes, failed=f"failed: {exc}"))
        except BenchError as exc:  # the namespace could not be set up
            why_not = str(exc)
            for key in ("scp-veth", "orthanc", "orthanc-n"):
                results.pop(key, None)
        pushes = {key: median_push(runs) for key, runs in results.items() if runs}
        if why_not:
            pushes["orthanc"] = Push("Orthanc", len(files), nbytes, failed=f"skipped: {why_not}")

        profile_text = ""
        if args.profile:
            for mode in ("wall", "gil"):
                print(f"profiling ours with py-spy ({mode}) during a single-association push ...", flush=True)
                try:
                    profile_text += "\n" + profile_ours(workdir, files, db, pg, mode, 15)
                except (BenchError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
                    profile_text += f"\nprofile ({mode}) failed: {exc}\n"

        print()
        print("x scp: objects/s relative to storescp over loopback (TLS, no fsync, no index, no encryption)")
        print(f"srv CPU%: server process CPU time / wall time (100% = one core; {os.cpu_count()} cores here)")
        print("PDV: the max PDV the server granted (its max PDU size minus 12)")
        if args.repeat > 1:
            print(f"each row: the median of {args.repeat} runs by objects/s; 'range' is min..max objects/s")
        print()
        order = ["scp", "scp-veth", "ours", "orthanc", "ours-n", "orthanc-n"]
        spreads = {key: spread(runs) for key, runs in results.items()} if args.repeat > 1 else {}
        print_table([(key, pushes[key]) for key in order if key in pushes], pushes.get("scp"), spreads)
        verdicts(pushes, n)
        if profile_text:
            print(profile_text, end="")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
