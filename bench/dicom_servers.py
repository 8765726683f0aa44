"""The servers of ``bench/dicom_ingest.py``: ours and dcmtk ``storescp`` (Orthanc: ``dicom_orthanc.py``).

Each server is a context manager yielding a :class:`Target`: a running server, ready on
its port, with the (TLS identity, calling AE) pairs that may push to it. Only ours needs
the project's code, and only through its command line (``pacs init``, ``pacs modality
add``, ``pacs serve``, ``pacs verify``), so storescp and Orthanc rows still run while the
archive itself is broken.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import ROOT, bench_database, free_port, temp_dir

STORESCU = "/usr/bin/storescu"  # never the venv's pynetdicom script of the same name
STORESCP = "/usr/bin/storescp"
NS_ADDR = "10.200.0.2"  # Orthanc's side of the veth pair (dicom_orthanc.py), in the server certificate
NS_PORT = 4243  # storescp's port in that namespace
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A case could not run; the message says why, and the row shows it."""


# ---------------------------------------------------------------------------
# Ports, /proc, processes
# ---------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (``pacs serve``'s workers, ``storescp --fork``'s one per association)."""
    tree, index = [pid], 0
    while index < len(tree):
        with suppress(OSError):
            for task in Path(f"/proc/{tree[index]}/task").iterdir():
                with suppress(OSError):
                    tree += [int(child) for child in (task / "children").read_text().split()]
        index += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid`'s process tree so far, reaped children included, from /proc."""
    total = 0.0
    for member in process_tree(pid):
        with suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += sum(int(value) for value in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
    return total


def hwm_kb(pid: int) -> int:
    """VmHWM of one process in kB (0 once it is gone)."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


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


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
        stop(proc)


def run(command: Sequence[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise BenchError(f"{what} failed: {message[-1] if message else result.returncode}")
    return result.stdout


# ---------------------------------------------------------------------------
# TLS identities, and a throwaway CA for storescp and Orthanc (the openssl command)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """Key, certificate and trust anchor for one side of a mutual-TLS connection."""

    key: Path
    cert: Path
    ca: Path

    def dcmtk(self) -> list[str]:
        return ["+tls", str(self.key), str(self.cert), "+cf", str(self.ca)]


@dataclass(frozen=True)
class BenchPki:
    server: Tls
    client: Tls


PKI_CONFIG = f"""
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:{NS_ADDR}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_pki(directory: Path) -> BenchPki:
    """A CA, a server certificate (localhost, 127.0.0.1, NS_ADDR) and a client one (P-256, PEM).

    Made with the ``openssl`` command, not with the project's own PKI code, so that the
    peers' rows do not depend on the archive under test.
    """
    directory.mkdir(mode=0o700)
    (directory / "openssl.cnf").write_text(PKI_CONFIG)
    common = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc"]
    common += ["-days", "7", "-config", str(directory / "openssl.cnf")]
    ca = ["-CA", str(directory / "ca.crt"), "-CAkey", str(directory / "ca.key")]
    for role, subject in (("ca", "pacs bench CA"), ("server", "localhost"), ("client", "BENCHSCU")):
        command = [*common, "-extensions", role, *(ca if role != "ca" else []), "-subj", f"/CN={subject}"]
        run(
            [*command, "-keyout", str(directory / f"{role}.key"), "-out", str(directory / f"{role}.crt")],
            "openssl",
        )
    return BenchPki(
        server=Tls(directory / "server.key", directory / "server.crt", directory / "ca.crt"),
        client=Tls(directory / "client.key", directory / "client.crt", directory / "ca.crt"),
    )


# ---------------------------------------------------------------------------
# A server to push to
# ---------------------------------------------------------------------------


@dataclass
class Target:
    """A running server: where to push, as whom, and what to check after the push."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    called: str
    clients: list[tuple[Tls, str]]
    kind: str  # "ours", "orthanc", "storescp"
    logdir: Path
    db_url: str = ""  # ours on PostgreSQL: its database (the WAL flushes happen in PostgreSQL's processes)
    log: Path | None = None  # the server's output
    after: Callable[[], str] = field(default=lambda: "")  # run after the push: a note for the row


# ---------------------------------------------------------------------------
# Ours: pacs init / modality add / serve, as an admin would run them
# ---------------------------------------------------------------------------


def pacs_command() -> list[str]:
    script = Path(sys.executable).parent / "pacs"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pacs.cli"]


def verify_archive(proc: subprocess.Popen[bytes], data_dir: Path) -> str:
    """Stop the server, then ``pacs verify`` its archive: 'N objects checked: all intact', or the trouble."""
    stop(proc, timeout=120)
    result = subprocess.run(
        [*pacs_command(), "verify", "--data", str(data_dir)], capture_output=True, text=True, cwd=ROOT
    )
    lines = (result.stdout + result.stderr).strip().splitlines()
    summary = next((line for line in reversed(lines) if "objects checked" in line), "")
    if result.returncode == 0 and summary:
        return f"verify: {summary}"
    return f"VERIFY exit {result.returncode}: {' | '.join(lines[-2:])}"


def enrol_nodes(pacs: Sequence[str], data_dir: Path, home: Path, clients: int) -> list[tuple[Tls, str]]:
    """``pacs modality add BENCHCTn --issue-cert`` for `clients` nodes: their TLS identities and AEs."""
    nodes = []
    for number in range(clients):
        ae, out = f"BENCHCT{number + 1}", home / f"node-{number + 1}"
        add = [*pacs, "modality", "add", ae, "--host", "127.0.0.1", "--issue-cert", str(out)]
        run([*add, "--data", str(data_dir)], f"pacs modality add {ae}")
        nodes.append((Tls(out / "client.key", out / "client.crt", out / "ca.crt"), ae))
    return nodes


@contextmanager
def our_server(workdir: Path, clients: int, backend: str, pg_server: str) -> Iterator[Target]:
    """A fresh archive with `clients` enrolled nodes (one AE and certificate each), served on 127.0.0.1."""
    pacs = pacs_command()
    with temp_dir("ours-", workdir) as home, bench_database(backend, pg_server) as db_url:
        data_dir = home / "data"
        run([*pacs, "init", "--data", str(data_dir), *(["--db", db_url] if db_url else [])], "pacs init")
        nodes = enrol_nodes(pacs, data_dir, home, clients)
        port = free_port()
        env = {
            **os.environ,
            "PACS_DICOM_PORT": str(port),
            "PACS_DICOM_BIND": "127.0.0.1",
            "PACS_WEB_PORT": str(free_port()),
            "PACS_WEB_BIND": "127.0.0.1",
        }
        command = [*pacs, "serve", "--data", str(data_dir)]
        with server_process(command, home / "serve.log", port=port, env=env, ready_text="listening") as proc:
            yield Target(
                proc, "127.0.0.1", port, "PACS", nodes, "ours", home, db_url, home / "serve.log",
                after=lambda: verify_archive(proc, data_dir),
            )  # fmt: skip


# ---------------------------------------------------------------------------
# dcmtk storescp: the transport ceiling (no fsync, index or encryption)
# ---------------------------------------------------------------------------


@contextmanager
def storescp_server(
    workdir: Path, clients: int, certs: BenchPki, netns: str | None = None
) -> Iterator[Target]:
    """``storescp +tls -rc`` writing plain files; with ``--fork`` (a process per association) for several."""
    with temp_dir("storescp-", workdir) as home:
        out = home / "out"
        out.mkdir()
        port = NS_PORT if netns else free_port()
        prefix = ["ip", "netns", "exec", netns] if netns else []
        fork = ["--fork"] if clients > 1 else []
        command = [*prefix, STORESCP, *fork, *certs.server.dcmtk(), "-rc", "-od", str(out), str(port)]
        env = {**os.environ, "TCP_NODELAY": "1"}
        with server_process(command, home / "storescp.log", port=port, env=env) as proc:
            host = NS_ADDR if netns else "127.0.0.1"
            peers = [(certs.client, f"BENCHSCU{number + 1}") for number in range(clients)]
            yield Target(
                proc, host, port, "STORESCP", peers, "storescp", home, log=home / "storescp.log",
                after=lambda: f"{sum(1 for _ in out.iterdir())} files written",
            )  # fmt: skip
