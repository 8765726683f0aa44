"""Shared fixtures: real PostgreSQL and SQLCipher archives, synthetic and sample DICOM files.

PostgreSQL: the server on 127.0.0.1:5432 is used when it answers; otherwise a
throwaway cluster is started from Debian's binaries. When neither works the tests that
need it fail (they never skip), so CI cannot pass without a real PostgreSQL.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from pacs.core import pki
from pacs.core.config import Settings, with_overrides
from pacs.core.context import CA_CERT, CA_KEY, Context, initialise, open_pacs
from pacs.core.nodes import NodeRegistry, issue_node_certificate, parse_permissions
from pacs.dicom.server import DicomServer
from storage.blobs import BlobStore
from tests.data.make_series import make_ct_series

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432"
REPO = Path(__file__).resolve().parent.parent  # the repository, for tests that run its code

# pydicom's own samples: one per transfer syntax family we must store unchanged.
SAMPLE_NAMES = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "JPEG-lossy.dcm",  # JPEG baseline/extended
    "JPGExtended.dcm",  # JPEG extended
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline RGB
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_RLE.dcm",  # RLE
    "image_dfl.dcm",  # deflated explicit VR
    "emri_small_jpeg_2k_lossless.dcm",  # multi-frame JPEG 2000
]


# Figures a test measures and the run should show (not assert), printed after the results.
FIGURES = pytest.StashKey[dict[str, str]]()


def blob_store(pacs: Context) -> BlobStore:
    """A store over the archive's blob directory, for tests that look at the files themselves.

    :class:`~storage.archive.Archive` keeps its own store private; this one sees the same files.
    """
    return BlobStore(pacs.settings.blob_dir, pacs.keyring)


def report_figure(config: pytest.Config, name: str, value: str) -> None:
    """Show `name: value` in the summary at the end of the test run."""
    config.stash.setdefault(FIGURES, {})[name] = value


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker, hand this worker's figures to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["figures"] = session.config.stash.get(FIGURES, {})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """In the xdist controller, collect the figures a worker measured."""
    node.config.stash.setdefault(FIGURES, {}).update(getattr(node, "workeroutput", {}).get("figures", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, {})
    if figures:
        terminalreporter.section("figures")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(f"{url}/postgres", connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _throwaway_cluster(root: Path) -> tuple[str, subprocess.Popen[bytes]]:
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.fail("no PostgreSQL on 127.0.0.1:5432 and no initdb to start one (apt-get install postgresql)")
    bindir = Path(binaries[-1]).parent
    data, sockets = root / "pgdata", root / "sock"
    sockets.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(data)],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    server = subprocess.Popen(
        [
            *prefix,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not _answers(url):
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            pytest.fail("could not start a throwaway PostgreSQL cluster")
        time.sleep(0.2)
    return url, server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Base URL of a running PostgreSQL server (without a database name)."""
    if _answers(LOCAL_PG):
        yield LOCAL_PG
        return
    root = Path(tempfile.mkdtemp(prefix="pacs-pg-"))
    url, server = _throwaway_cluster(root)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    name = f"pacs_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{pg_server}/{name}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on the embedded SQLCipher index ("") and once on PostgreSQL."""
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """A freshly initialised archive (on each database backend)."""
    return initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url=db_url, user="test")


@pytest.fixture
def pacs(settings: Settings) -> Iterator[Context]:
    """The open archive of :func:`settings`."""
    opened = open_pacs(settings)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def ct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic CT series (6 slices of 64x64) with a distinctive patient name."""
    out = tmp_path_factory.mktemp("ct")
    make_ct_series(
        out, slices=6, rows=64, columns=64, patient_name="QUIXOTE^DULCINEA", patient_id="PID-Q-7731"
    )
    return out


@pytest.fixture(scope="session")
def sample_files() -> list[Path]:
    """pydicom's sample files covering implicit/explicit VR and every compressed syntax we accept."""
    return [Path(get_testdata_file(name)) for name in SAMPLE_NAMES]


@dataclass(frozen=True)
class NodeFiles:
    """An enrolled node's AE title and the PEM files dcmtk or pynetdicom use for it."""

    ae_title: str
    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / "client.key"

    @property
    def cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def tls_args(self) -> list[str]:
        """dcmtk's arguments for mutual TLS as this node."""
        return ["+tls", str(self.key), str(self.cert), "+cf", str(self.ca)]


@dataclass
class RunningDicom:
    """An archive with its DICOM listener running in this process on a free port."""

    pacs: Context
    server: DicomServer
    tmp: Path

    @property
    def port(self) -> int:
        return self.server.tls_port

    @property
    def ae_title(self) -> str:
        return self.pacs.settings.dicom.ae_title

    def enrol(
        self,
        ae_title: str,
        *,
        host: str = "127.0.0.1",
        allow: str = "store",
        port: int | None = None,
        plaintext: bool = False,
    ) -> NodeFiles:
        """Enrol a node with a certificate issued by the archive's CA."""
        settings = self.pacs.settings
        ca = pki.Issued(
            key=pki.load_private_key(settings.key_dir / CA_KEY),
            cert=pki.load_certificate(settings.tls_dir / CA_CERT),
        )
        files = NodeFiles(ae_title, self.tmp / f"node-{ae_title}")
        certificate = issue_node_certificate(ca, ae_title, files.directory, server_auth=port is not None)
        NodeRegistry(self.pacs.database).add(
            ae_title,
            host=host,
            certificate=certificate,
            cert_issued=True,
            permissions=parse_permissions(allow),
            port=port,
            plaintext=plaintext,
        )
        return files

    def dcmtk(
        self,
        tool: str,
        node: NodeFiles,
        *options: str,
        files: Sequence[Path] = (),
        called: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run dcmtk's `tool` (echoscu, storescu, findscu) against the listener as `node`."""
        command = [
            f"/usr/bin/{tool}",
            *node.tls_args(),
            "-aet",
            node.ae_title,
            "-aec",
            called or self.ae_title,
            *options,
            "127.0.0.1",
            str(self.port),
            *map(str, files),
        ]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=300, env={**os.environ, "TCP_NODELAY": "1"}
        )


def pacs_serve(data: Path, log: Path, **settings: str) -> subprocess.Popen[str]:
    """Start ``pacs serve --data DATA`` bound to 127.0.0.1, stdout piped, stderr to `log`.

    `settings` are environment overrides such as ``PACS_DICOM_PORT="12762"``.
    """
    env = {**os.environ, "PACS_DICOM_BIND": "127.0.0.1", "PACS_WEB_BIND": "127.0.0.1", **settings}
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "pacs", "serve", "--data", str(data)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )


@contextlib.contextmanager
def running_dicom(tmp_path: Path, **dicom: Any) -> Iterator[RunningDicom]:
    """A fresh archive (SQLCipher) with its DICOM TLS listener on a free port of 127.0.0.1.

    `dicom` overrides ``[dicom]`` settings (timeouts, limits) for the test.
    """
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    settings = with_overrides(settings, "dicom", **({"port": _free_port(), "bind": "127.0.0.1"} | dicom))
    opened = open_pacs(settings)
    server = DicomServer(opened)
    server.start()
    try:
        yield RunningDicom(opened, server, tmp_path)
    finally:
        server.stop(grace_seconds=5)
        opened.close()


@pytest.fixture
def dicom(tmp_path: Path) -> Iterator[RunningDicom]:
    """A fresh archive whose DICOM listener runs on a free port, with a plaintext port configured."""
    with running_dicom(tmp_path, plaintext_port=_free_port()) as running:
        yield running


def assert_same_dataset(received: Dataset, sent: Dataset) -> None:
    """Element by element, including Pixel Data (file meta is the receiver's and not compared)."""
    assert [elem.tag for elem in received] == [elem.tag for elem in sent]
    for elem in sent:
        assert received[elem.tag] == elem, f"{elem.tag} {elem.keyword} differs"
    if "PixelData" in sent:
        assert received.PixelData == sent.PixelData


def read_stored(pacs: Context, sop_uid: str) -> Dataset:
    """The stored object, decrypted (read whole: the archive's stream cannot seek, pydicom must)."""
    with pacs.archive.open(sop_uid) as stream:
        return pydicom.dcmread(io.BytesIO(stream.read()))
