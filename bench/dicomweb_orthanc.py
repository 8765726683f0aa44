"""Orthanc with its DICOMweb plugin for ``bench/web_dicomweb.py``: configured, loaded and served.

Debian's ``orthanc`` (1.10) and ``orthanc-dicomweb`` (1.7) packages, in the network
namespace of ``bench/dicom_orthanc.py`` (Orthanc cannot listen on loopback only), with
HTTP basic authentication and the plugin at ``/dicom-web/``. HTTPS (a certificate of the
bench's throwaway CA) if Orthanc's works, else plain HTTP: the scheme used is returned.
Objects are loaded with ``POST /instances``, several connections at once for the many small
objects of the study corpus, then Orthanc is restarted before anything is timed.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.dicom_orthanc import NETNS, ORTHANC
from bench.dicom_servers import NS_ADDR, BenchError, BenchPki, server_process
from bench.web_client import HttpsClient, get
from bench.web_orthanc import ORTHANC_HTTP_PORT, orthanc_config

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
DICOMWEB_ROOT = "/dicom-web"
LOAD_CONNECTIONS = 4


def plugin_unavailable() -> str:
    """Why Orthanc's DICOMweb plugin cannot be used ('' when it can)."""
    if not Path(DICOMWEB_PLUGIN).exists():
        return f"{DICOMWEB_PLUGIN} not found; install it with 'apt-get install -y orthanc-dicomweb'"
    return ""


def dicomweb_config(home: Path, certs: BenchPki, password: str, *, tls: bool) -> Path:
    """The bench's Orthanc configuration (``web_orthanc.orthanc_config``) with the DICOMweb plugin.

    The storage area is not fsynced (``SyncStorageArea`` off): the timed requests only read,
    and loading 100,000 studies would otherwise be bound by the disk's flushes.
    """
    path = orthanc_config(home, certs, password, tls=tls)
    config = json.loads(path.read_text())
    config |= {
        "Plugins": [DICOMWEB_PLUGIN],
        "SyncStorageArea": False,
        "DicomWeb": {
            "Enable": True,
            "Root": DICOMWEB_ROOT + "/",
            "EnableWado": False,
            "Ssl": tls,
            "Host": f"{NS_ADDR}:{ORTHANC_HTTP_PORT}",
        },
    }
    path.write_text(json.dumps(config, indent=2))
    return path


@dataclass
class Orthanc:
    """A running Orthanc with the plugin: how to reach it and its process."""

    proc: subprocess.Popen[bytes]
    cafile: Path | None  # None: plain HTTP
    auth: tuple[str, str]
    scheme: str

    def client(self) -> HttpsClient:
        return HttpsClient(NS_ADDR, ORTHANC_HTTP_PORT, self.cafile, basic_auth=self.auth)


def _command(config: Path) -> list[str]:
    return ["ip", "netns", "exec", NETNS, ORTHANC, str(config)]


@contextmanager
def _serve(
    home: Path, config: Path, cafile: Path | None, auth: tuple[str, str], log: str
) -> Iterator[Orthanc]:
    """Orthanc on `config` until the block ends; its ``/system`` answered once."""
    env = dict(os.environ)
    with server_process(_command(config), home / log, port=ORTHANC_HTTP_PORT, env=env) as proc:
        orthanc = Orthanc(proc, cafile, auth, "HTTPS" if cafile else "plain HTTP")
        client = orthanc.client()
        reply = get(client, "/system")
        client.close()
        if reply.status != 200:
            raise BenchError(f"Orthanc /system: HTTP {reply.status}")
        yield orthanc


def choose_scheme(home: Path, certs: BenchPki, auth: tuple[str, str]) -> tuple[Path, Path | None, str]:
    """The configuration to use: HTTPS if Orthanc answers over it, else plain HTTP (and why)."""
    config = dicomweb_config(home, certs, auth[1], tls=True)
    env = dict(os.environ)
    with server_process(_command(config), home / "orthanc-tls.log", port=ORTHANC_HTTP_PORT, env=env) as proc:
        client = HttpsClient(NS_ADDR, ORTHANC_HTTP_PORT, certs.server.ca, basic_auth=auth)
        try:
            get(client, "/system")
            client.close()
            return config, certs.server.ca, "HTTPS"
        except (OSError, http.client.HTTPException) as exc:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            how = f"Orthanc exited with {proc.returncode}" if proc.returncode is not None else str(exc)
    config = dicomweb_config(home, certs, auth[1], tls=False)
    return config, None, f"plain HTTP, as its HTTPS failed on the first request ({how})"


def _post(client: HttpsClient, body: bytes) -> str:
    reply = client.request("POST", "/instances", body, "application/dicom")
    if reply.status != 200:
        raise BenchError(f"Orthanc POST /instances: HTTP {reply.status} {reply.text[:200]}")
    return str(json.loads(reply.body)["ID"])


def upload_files(orthanc: Orthanc, files: Sequence[Path]) -> list[str]:
    """POST every file (one connection, in order); Orthanc's instance ids."""
    client = orthanc.client()
    ids = [_post(client, path.read_bytes()) for path in files]
    client.close()
    return ids


def upload_generated(
    orthanc: Orthanc, count: int, make: Callable[[int], bytes], progress: Callable[[int], None]
) -> float:
    """POST ``make(0) .. make(count - 1)`` over :data:`LOAD_CONNECTIONS` connections; seconds taken."""
    began = time.perf_counter()
    shares = [range(first, count, LOAD_CONNECTIONS) for first in range(LOAD_CONNECTIONS)]

    def send(numbers: range) -> None:
        client = orthanc.client()
        for done, number in enumerate(numbers, start=1):
            _post(client, make(number))
            if numbers.start == 0 and done % 5000 == 0:
                progress(done * LOAD_CONNECTIONS)
        client.close()

    with ThreadPoolExecutor(LOAD_CONNECTIONS) as pool:
        for future in [pool.submit(send, share) for share in shares]:
            future.result()
    return time.perf_counter() - began


@contextmanager
def orthanc_dicomweb(
    home: Path, certs: BenchPki, auth: tuple[str, str], load: Callable[[Orthanc], None]
) -> Iterator[Orthanc]:
    """A fresh Orthanc with the plugin, loaded by `load`, then restarted for the measurements."""
    config, cafile, scheme = choose_scheme(home, certs, auth)
    with _serve(home, config, cafile, auth, "orthanc-load.log") as orthanc:
        load(orthanc)
    with _serve(home, config, cafile, auth, "orthanc.log") as orthanc:
        orthanc.scheme = scheme
        yield orthanc
