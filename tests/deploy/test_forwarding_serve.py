"""Forwarding in ``pacs serve``: a ``[[route]]`` forwards a study storescu pushed, across a restart.

The archive runs as the real command (two DICOM worker processes; the sender runs in the first).
The route's destination is dcmtk's ``storescp +tls``, down when the study arrives and up after
the service was stopped and started again: the job made before the stop is sent after it, and
every object arrives once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest

from pacs.cli import main
from pacs.core.config import load_settings
from pacs.core.context import initialise, open_pacs
from pacs.core.nodes import EnrolledNode, NodeRegistry
from pacs.ops.forward_queue import PENDING, SENT, ForwardQueue, Job
from tests.conftest import NodeFiles, _free_port, pacs_serve
from tests.data.make_series import make_ct_series
from tests.dicom.forward_peers import storescp

ROUTE = '\n[[route]]\nname = "ct-to-offsite"\nfrom_ae = "CT1"\nmodality = "CT"\nto = "OFFSITE"\n'


def _enrol(data: Path, node: NodeFiles, *port: str) -> None:
    argv = [
        "modality",
        "add",
        node.ae_title,
        "--host",
        "127.0.0.1",
        *port,
        "--issue-cert",
        str(node.directory),
    ]
    assert main([*argv, "--data", str(data)], environ={}) == 0


@contextmanager
def _serving(data: Path, log: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """``pacs serve`` with two DICOM workers, until SIGTERM at the end of the block."""
    process = pacs_serve(
        data, log, PACS_DICOM_PORT=str(port), PACS_DICOM_WORKERS="2", PACS_WEB_PORT=str(_free_port())
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "DICOM TLS listening" in banner, log.read_text()
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()


def _jobs(data: Path) -> list[Job]:
    pacs = open_pacs(load_settings(data, {}))
    try:
        return ForwardQueue(pacs.database).jobs()
    finally:
        pacs.close()


def _until(what: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.2)


@pytest.fixture
def archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, NodeFiles, NodeFiles]:
    """An archive with CT1 (a modality) and OFFSITE (a destination with a port) enrolled, and the route."""
    data = tmp_path / "data"
    initialise(data, ae_title="PACS", hostname="localhost", db_url="", user="test")
    modality, offsite = NodeFiles("CT1", tmp_path / "ct1"), NodeFiles("OFFSITE", tmp_path / "offsite")
    _enrol(data, modality)
    _enrol(data, offsite, "--port", str(_free_port()))
    with (data / "pacs.toml").open("a") as config:
        config.write(ROUTE)
    capsys.readouterr()
    return data, modality, offsite


def test_a_routed_study_queued_while_the_destination_is_down_arrives_once_after_a_restart(
    archive: tuple[Path, NodeFiles, NodeFiles], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, modality, offsite = archive
    files = make_ct_series(tmp_path / "ct", slices=5, rows=32, columns=32)
    port = _free_port()
    with _serving(data, tmp_path / "serve1.log", port):
        push = subprocess.run(
            ["/usr/bin/storescu", *modality.tls_args(), "-aet", "CT1", "-aec", "PACS", "127.0.0.1", str(port)]
            + [str(path) for path in files],
            capture_output=True, text=True, timeout=120, env={**os.environ, "TCP_NODELAY": "1"},
        )  # fmt: skip
        assert push.returncode == 0, push.stderr
        _until(lambda: any(job.attempts for job in _jobs(data)))
    (waiting,) = _jobs(data)
    assert (waiting.state, waiting.requested_by, waiting.attempts) == (PENDING, "route:ct-to-offsite", 1)
    assert "OFFSITE did not accept an association" in waiting.last_error

    destination_port = next(node.port for node in _registry(data) if node.ae_title == "OFFSITE")
    with storescp(offsite, destination_port, tmp_path / "offsite-received") as outdir:
        with _serving(data, tmp_path / "serve2.log", port):
            assert main(["study", "retry", str(waiting.id), "--data", str(data)], environ={}) == 0
            _until(lambda: _jobs(data)[0].state == SENT)
        received = [str(pydicom.dcmread(path).SOPInstanceUID) for path in outdir.iterdir()]
    (sent,) = _jobs(data)
    assert (sent.id, sent.state, sent.sent, sent.failed) == (waiting.id, SENT, 5, 0)
    assert sorted(received) == sorted(str(pydicom.dcmread(path).SOPInstanceUID) for path in files)


def _registry(data: Path) -> list[EnrolledNode]:
    pacs = open_pacs(load_settings(data, {}))
    try:
        return NodeRegistry(pacs.database).all()
    finally:
        pacs.close()


def test_serve_refuses_to_start_with_a_route_to_a_node_that_is_not_enrolled(
    archive: tuple[Path, NodeFiles, NodeFiles], tmp_path: Path
) -> None:
    data, _, _ = archive
    with (data / "pacs.toml").open("a") as config:
        config.write(ROUTE.replace("ct-to-offsite", "lost").replace('"OFFSITE"', '"NOBODY"'))
    log = tmp_path / "refused.log"
    process = pacs_serve(data, log, PACS_DICOM_PORT=str(_free_port()), PACS_WEB_PORT=str(_free_port()))
    assert process.wait(timeout=60) != 0
    if process.stdout is not None:
        process.stdout.close()
    errors = log.read_text().strip().splitlines()
    assert errors == [
        "pacs: error: pacs.toml: route lost: destination NOBODY is not an enrolled node; "
        "enrol the node or fix the [[route]]"
    ]
