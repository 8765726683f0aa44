"""Orthanc with its DICOMweb plugin for ``bench/web_dicomweb.py``: configured, loaded and served.

Debian's ``orthanc`` (1.10) and ``orthanc-dicomweb`` (1.7) packages, in the network
namespace of ``bench/dicom_orthanc.py`` (Orthanc cannot listen on loopback only), with
HTTP basic authentication and the plugin at ``/dicom-web/``. Objects are loaded over plain
HTTP with ``POST /instances``, several connections at once for the many small objects of
the study corpus; Orthanc is then restarted over plain HTTP and over HTTPS (a certificate
of the bench's throwaway CA, ``SslEnabled``) for the measurements, on the same storage.

Debian 12's Orthanc serves HTTPS through its ``libcivetweb`` 1.15, which loads OpenSSL by
name at run time (``dlopen("libssl.so")``) and calls ``SSL_get_peer_certificate`` after
every handshake; OpenSSL 3 has only ``SSL_get1_peer_certificate`` under that name's place,
so the pointer is NULL and the worker thread jumps to address 0 (a segfault on the first
request). :func:`tls_shim` builds a three-line ``libssl.so`` that defines the old name on
top of the system's ``libssl.so.3`` and puts it first on Orthanc's ``LD_LIBRARY_PATH``
(``gcc`` and ``libssl-dev``): Orthanc's own TLS then works unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.dicom_orthanc import NETNS, ORTHANC
from bench.dicom_servers import NS_ADDR, BenchError, BenchPki, server_process
from bench.web_client import HttpsClient, get
from bench.web_orthanc import ORTHANC_HTTP_PORT, orthanc_config

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
DICOMWEB_ROOT = "/dicom-web"
LOAD_CONNECTIONS = 4
_SHIM_SOURCE = """#include <openssl/ssl.h>
#undef SSL_get_peer_certificate
X509 *SSL_get_peer_certificate(const SSL *ssl) { return SSL_get1_peer_certificate(ssl); }
"""


def plugin_unavailable() -> str:
    """Why Orthanc's DICOMweb plugin cannot be used ('' when it can)."""
    if not Path(DICOMWEB_PLUGIN).exists():
        return f"{DICOMWEB_PLUGIN} not found; install it with 'apt-get install -y orthanc-dicomweb'"
    return ""


def tls_shim(directory: Path) -> tuple[Path | None, str]:
    """A directory holding the ``libssl.so`` shim of the module docstring, or None and why not."""
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/openssl/ssl.h").exists():
        return None, "no gcc or OpenSSL headers to build the libssl shim (apt-get install gcc libssl-dev)"
    directory.mkdir(mode=0o700)
    (directory / "shim.c").write_text(_SHIM_SOURCE)
    command = [gcc, "-shared", "-fPIC", "-O2", "-o", str(directory / "libssl.so"), str(directory / "shim.c")]
    result = subprocess.run([*command, "-lssl"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None, f"the libssl shim did not build: {result.stderr.strip()[:200]}"
    return directory, ""


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
    path = path.with_name("orthanc-tls.json" if tls else "orthanc-http.json")
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


@contextmanager
def _serve(
    home: Path, config: Path, cafile: Path | None, auth: tuple[str, str], shim: Path | None, log: str
) -> Iterator[Orthanc]:
    """Orthanc on `config` until the block ends; its ``/system`` answered once."""
    env = dict(os.environ)
    if shim is not None:
        env["LD_LIBRARY_PATH"] = str(shim)
    command = ["ip", "netns", "exec", NETNS, ORTHANC, str(config)]
    with server_process(command, home / log, port=ORTHANC_HTTP_PORT, env=env) as proc:
        orthanc = Orthanc(proc, cafile, auth, "HTTPS" if cafile else "HTTP")
        client = orthanc.client()
        reply = get(client, "/system")
        client.close()
        if reply.status != 200:
            raise BenchError(f"Orthanc /system: HTTP {reply.status}")
        yield orthanc


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


@dataclass(frozen=True)
class Served:
    """A loaded Orthanc's home: how to start it again over either scheme."""

    home: Path
    certs: BenchPki
    auth: tuple[str, str]
    shim: Path | None
    why_no_tls: str

    @contextmanager
    def running(self, *, tls: bool) -> Iterator[Orthanc]:
        """Orthanc restarted on the loaded storage, over HTTPS (`tls`) or plain HTTP."""
        config = dicomweb_config(self.home, self.certs, self.auth[1], tls=tls)
        cafile = self.certs.server.ca if tls else None
        with _serve(
            self.home, config, cafile, self.auth, self.shim, f"orthanc-{'tls' if tls else 'http'}.log"
        ) as o:
            yield o


def loaded_orthanc(
    home: Path, certs: BenchPki, auth: tuple[str, str], load: Callable[[Orthanc], None]
) -> Served:
    """A fresh Orthanc with the plugin loaded by `load` over plain HTTP, then stopped."""
    shim, why_no_tls = tls_shim(home / "shim")
    config = dicomweb_config(home, certs, auth[1], tls=False)
    with _serve(home, config, None, auth, shim, "orthanc-load.log") as orthanc:
        load(orthanc)
    return Served(home, certs, auth, shim, why_no_tls)
