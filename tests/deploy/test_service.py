"""``pacs serve`` as a process tree: start-up, worker processes, signals and crashes.

Each test runs the real command in a subprocess on a free port of 127.0.0.1 and talks
to it with dcmtk over mutual TLS.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

from pacs.cli import main
from pacs.core.audit import EventType
from pacs.core.config import load_settings
from pacs.core.context import initialise, open_pacs
from tests.conftest import REPO, NodeFiles, _free_port, assert_same_dataset, pacs_serve, read_stored
from tests.data.make_series import make_ct_series

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


@pytest.fixture(scope="module")
def two_hundred(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """200 CT slices of 128x128 (about 33 KB each), for the crash test."""
    return make_ct_series(tmp_path_factory.mktemp("ct200"), slices=200, rows=128, columns=128)


# -- pacs serve as a process ------------------------------------------------------------------------


@dataclass
class Served:
    """A ``pacs serve`` process and what a peer needs to reach it."""

    process: subprocess.Popen[str]
    data: Path
    port: int
    node: NodeFiles
    nodes: list[NodeFiles]
    web_port: int

    def children(self) -> dict[int, str]:
        """The worker processes by pid, with their names (``pacs-dicom-N``, ``pacs-web``)."""
        listed = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        names = {}
        for pid in map(int, listed):
            with contextlib.suppress(OSError):
                names[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        return names

    def workers(self) -> list[int]:
        """The process ids of the DICOM worker processes (empty when it serves in one process)."""
        return sorted(pid for pid, name in self.children().items() if name.startswith("pacs-dicom-"))


@contextmanager
def _pacs_serve(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    workers: int = 0,
    nodes: int = 1,
    environ: dict[str, str] | None = None,
) -> Iterator[Served]:
    """Initialise an archive, enrol MODALITY (and MODALITY1..) with the CLI, run ``pacs serve``.

    It runs on a free port of 127.0.0.1 with `workers` DICOM processes (0: one per core).
    """
    data = tmp_path / "served"
    initialise(data, ae_title="PACS", hostname="localhost", db_url="", user="test")
    enrolled = []
    for n in range(nodes):
        node = NodeFiles(f"MODALITY{n or ''}", tmp_path / f"modality{n}")
        argv = ["modality", "add", node.ae_title, "--host", "127.0.0.1", "--issue-cert", str(node.directory)]
        assert main([*argv, "--data", str(data)], environ={}) == 0
        enrolled.append(node)
    capsys.readouterr()
    port, web_port = _free_port(), _free_port()
    process = pacs_serve(
        data,
        tmp_path / "serve.log",
        PACS_DICOM_PORT=str(port),
        PACS_DICOM_WORKERS=str(workers),
        PACS_WEB_PORT=str(web_port),
        **(environ or {}),
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "DICOM TLS listening" in banner, (banner, (tmp_path / "serve.log").read_text())
        yield Served(process, data, port, enrolled[0], enrolled, web_port)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _storescu(served: Served, *options: str, files: list[Path], node: NodeFiles | None = None) -> list[str]:
    node = node or served.node
    return [
        "/usr/bin/storescu",
        *node.tls_args(),
        "-aet",
        node.ae_title,
        "-aec",
        "PACS",
        *options,
        "127.0.0.1",
        str(served.port),
        *map(str, files),
    ]


@pytest.mark.parametrize("kill_after", [40, 130])
def test_sigkill_during_a_storescu_push_keeps_every_acknowledged_object(
    tmp_path: Path, two_hundred: list[Path], capsys: pytest.CaptureFixture[str], kill_after: int
) -> None:
    acknowledged: list[Path] = []
    with _pacs_serve(tmp_path, capsys) as served:
        push = subprocess.Popen(
            _storescu(served, "-v", "-R", files=two_hundred),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=DCMTK_ENV,
        )
        assert push.stderr is not None
        sending: Path | None = None
        # storescu -v logs "Sending file: PATH" and then "Received Store Response (Success)".
        for line in push.stderr:
            if "Sending file:" in line:
                sending = Path(line.split("Sending file:", 1)[1].strip())
            elif "Received Store Response (Success)" in line:
                assert sending is not None
                acknowledged.append(sending)
                if len(acknowledged) == kill_after:
                    os.kill(served.process.pid, signal.SIGKILL)
        push.wait(timeout=60)
        push.stderr.close()
        assert served.process.wait(timeout=30) == -signal.SIGKILL

    assert kill_after <= len(acknowledged) < len(two_hundred), "the server must die mid-push"
    assert push.returncode != 0
    assert main(["verify", "--data", str(served.data)], environ={}) == 0
    assert "all intact" in capsys.readouterr().out
    pacs = open_pacs(load_settings(served.data, {}))
    try:
        for path in acknowledged:
            sent = pydicom.dcmread(path)
            assert_same_dataset(read_stored(pacs, sent.SOPInstanceUID), sent)
        report = pacs.archive.verify()
        assert report.ok and report.checked >= len(acknowledged)
    finally:
        pacs.close()


def test_pacs_serve_stops_cleanly_on_sigterm_and_audits_start_and_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _pacs_serve(tmp_path, capsys) as served:
        echo = subprocess.run(
            [
                "/usr/bin/echoscu",
                *served.node.tls_args(),
                "-aet",
                "MODALITY",
                "-aec",
                "PACS",
                "127.0.0.1",
                str(served.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=DCMTK_ENV,
        )
        assert echo.returncode == 0, echo.stderr
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0
        assert served.process.stdout is not None
        assert "stopping" in served.process.stdout.read()

    pacs = open_pacs(load_settings(served.data, {}))
    try:
        types = [r.event_type for r in pacs.audit.records()]
        assert pacs.audit.verify().ok
    finally:
        pacs.close()
    assert types.count(EventType.APPLICATION_START) == 1
    assert types.count(EventType.APPLICATION_STOP) == 1
    assert types.index(EventType.APPLICATION_START) < types.index(EventType.APPLICATION_STOP)


def _echo(served: Served) -> subprocess.CompletedProcess[str]:
    command = ["/usr/bin/echoscu", *served.node.tls_args(), "-aet", "MODALITY", "-aec", "PACS"]
    return subprocess.run(
        [*command, "127.0.0.1", str(served.port)], capture_output=True, text=True, timeout=60, env=DCMTK_ENV
    )


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_two_workers_take_four_concurrent_pushes_and_every_object_arrives_intact(
    tmp_path: Path, two_hundred: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with _pacs_serve(tmp_path, capsys, workers=2, nodes=4) as served:
        assert len(served.workers()) == 2
        shares = [two_hundred[n::4] for n in range(4)]
        pushes = [
            subprocess.Popen(
                _storescu(served, files=share, node=node),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=DCMTK_ENV,
            )
            for node, share in zip(served.nodes, shares, strict=True)
        ]
        errors = [push.communicate(timeout=120)[1] for push in pushes]
        assert [push.returncode for push in pushes] == [0, 0, 0, 0], errors
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0

    pacs = open_pacs(load_settings(served.data, {}))
    try:
        for path in two_hundred:
            sent = pydicom.dcmread(path)
            assert_same_dataset(read_stored(pacs, sent.SOPInstanceUID), sent)
        assert pacs.archive.verify().ok
    finally:
        pacs.close()


def test_sigterm_stops_every_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _pacs_serve(tmp_path, capsys, workers=2) as served:
        workers = served.workers()
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0
        assert all(_gone(pid) for pid in workers)


def test_sigkill_of_pacs_serve_takes_its_workers_down_and_frees_the_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _pacs_serve(tmp_path, capsys, workers=2) as served:
        children = served.children()
        assert sorted(children.values()) == ["pacs-dicom-0", "pacs-dicom-1", "pacs-web"]
        served.process.kill()
        served.process.wait(timeout=30)
        assert _wait_until(lambda: all(_gone(pid) for pid in children))
        assert _echo(served).returncode != 0


def test_a_worker_that_dies_is_started_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _pacs_serve(tmp_path, capsys, workers=2) as served:
        first, second = served.workers()
        os.kill(first, signal.SIGKILL)
        assert _wait_until(lambda: len(served.workers()) == 2 and first not in served.workers())
        assert second in served.workers()
        for _ in range(4):  # the kernel spreads connections over both workers
            echo = _echo(served)
            assert echo.returncode == 0, echo.stderr


def test_a_second_pacs_serve_on_the_same_port_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _pacs_serve(tmp_path, capsys, workers=2) as served:
        env = {
            **os.environ,
            "PACS_DICOM_PORT": str(served.port),
            "PACS_DICOM_BIND": "127.0.0.1",
            "PACS_DICOM_WORKERS": "2",
        }
        second = subprocess.run(
            [sys.executable, "-m", "pacs", "serve", "--data", str(served.data)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=REPO,
        )
        assert second.returncode == 2
        assert "in use" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert _echo(served).returncode == 0


def _https(served: Served, path: str, *, context: ssl.SSLContext | None = None) -> http.client.HTTPResponse:
    ca = served.data / "tls" / "ca.crt"
    connection = http.client.HTTPSConnection(
        "localhost",
        served.web_port,
        context=context or ssl.create_default_context(cafile=str(ca)),
        timeout=30,
    )
    connection.request("GET", path)
    return connection.getresponse()


@pytest.mark.parametrize("workers", [1, 2])
def test_pacs_serve_serves_the_web_viewer_over_https_with_the_certificate_from_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: int
) -> None:
    with _pacs_serve(tmp_path, capsys, workers=workers) as served:
        login = _https(served, "/login")
        assert login.status == 200
        assert "max-age=" in login.headers["Strict-Transport-Security"]
        assert b"Log in" in login.read()
        home = _https(served, "/")
        assert home.status == 302
        assert home.headers["Location"].endswith("/login")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_web_viewer_speaks_tls_1_2_and_refuses_older_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def client(version: ssl.TLSVersion) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(served.data / "tls" / "ca.crt"))
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer what the server must refuse
        context.minimum_version = context.maximum_version = version
        return context

    with _pacs_serve(tmp_path, capsys, workers=1) as served:
        assert _https(served, "/login", context=client(ssl.TLSVersion.TLSv1_2)).status == 200
        for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            # asyncio's TLS (under hypercorn) hangs up on a refused handshake without OpenSSL's alert.
            with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|UNEXPECTED_EOF"):
                _https(served, "/login", context=client(old))


def test_web_viewer_gives_plain_http_no_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _pacs_serve(tmp_path, capsys, workers=1) as served:
        connection = http.client.HTTPConnection("127.0.0.1", served.web_port, timeout=30)
        try:
            connection.request("GET", "/login")
            answer = connection.getresponse()
            status, body = answer.status, answer.read()
        except ConnectionError:
            status, body = None, b""  # the server hung up on the plaintext request
        assert status in (None, 400)
        assert b"Log in" not in body


def test_clients_that_never_finish_a_tls_handshake_do_not_hold_up_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _pacs_serve(tmp_path, capsys, workers=1) as served:
        stalled = [socket.create_connection(("127.0.0.1", served.web_port)) for _ in range(3)]
        try:
            ca = served.data / "tls" / "ca.crt"
            connection = http.client.HTTPSConnection(
                "localhost", served.web_port, context=ssl.create_default_context(cafile=str(ca)), timeout=5
            )
            connection.request("GET", "/login")
            assert connection.getresponse().status == 200
        finally:
            for sock in stalled:
                sock.close()


def test_an_oversized_request_header_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _pacs_serve(tmp_path, capsys, workers=1) as served:
        try:
            answer = _https(served, "/login?" + "a" * 100_000)
        except (ssl.SSLError, ConnectionError):
            return  # refused by closing the connection while the request was still being sent
        assert answer.status in (400, 413, 414, 431)
        assert b"Log in" not in answer.read()


def test_max_associations_counts_every_association_over_all_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _pacs_serve(tmp_path, capsys, workers=2, environ={"PACS_DICOM_MAX_ASSOCIATIONS": "3"}) as served:
        ae = AE(ae_title=served.node.ae_title)
        ae.add_requested_context(Verification)
        context = ssl.create_default_context(cafile=served.node.ca)
        context.load_cert_chain(served.node.cert, served.node.key)

        def associate() -> Association:
            return ae.associate("127.0.0.1", served.port, ae_title="PACS", tls_args=(context, "localhost"))

        held = [associate() for _ in range(3)]
        assert all(a.is_established for a in held), "3 of 3 allowed associations must be accepted"
        refused = associate()
        assert refused.is_rejected
        assert refused.acceptor.primitive is not None and refused.acceptor.primitive.result == 2, "transient"
        held.pop().release()
        again = _eventually(associate, lambda a: a.is_established)
        for assoc in [*held, again]:
            assoc.release()
        ae.shutdown()


def _eventually(make: Callable[[], Association], ok: Callable[[Association], bool]) -> Association:
    """`make()` until `ok` holds for what it returns (released slots are freed as the peer closes)."""
    deadline = time.monotonic() + 10
    while True:
        made = make()
        if ok(made) or time.monotonic() > deadline:
            assert ok(made)
            return made
        time.sleep(0.2)
