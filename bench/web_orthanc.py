"""Orthanc's ``/instances/{id}/preview`` for ``bench/web_viewer.py``, in the network namespace of
``bench/dicom_orthanc.py``: HTTPS if Orthanc's works, else plain HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from bench.common import temp_dir
from bench.dicom_orthanc import NETNS, ORTHANC
from bench.dicom_servers import NS_ADDR, BenchError, BenchPki, cpu_seconds, server_process
from bench.web_client import HttpsClient, get
from bench.web_frames import Latencies

ORTHANC_HTTP_PORT = 8042


def orthanc_config(home: Path, certs: BenchPki, password: str, *, tls: bool) -> Path:
    pem = home / "https.pem"  # Orthanc wants the certificate and its key in one PEM file
    pem.write_text(certs.server.cert.read_text() + certs.server.key.read_text())
    pem.chmod(0o600)
    config = {
        "Name": "pacs-bench",
        "StorageDirectory": str(home / "storage"),
        "IndexDirectory": str(home / "index"),
        "StorageCompression": False,
        "Plugins": [],
        "LuaScripts": [],
        "DicomServerEnabled": False,
        "HttpServerEnabled": True,
        "HttpPort": ORTHANC_HTTP_PORT,
        "SslEnabled": tls,
        "SslCertificate": str(pem),
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"bench": password},
        "KeepAlive": True,
        "TcpNoDelay": True,
    }
    path = home / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _upload(
    home: Path, files: Sequence[Path], certs: BenchPki, auth: tuple[str, str]
) -> tuple[list[str], Path | None, list[str], str]:
    """POST `files` to a fresh Orthanc, over HTTPS if it works, else plain HTTP.

    Returns its command line, the CA to trust (None for HTTP), the instance ids and how it was reached.
    """
    env = dict(os.environ)
    ids: list[str] = []
    scheme = "HTTPS"
    for tls in (True, False):
        config = orthanc_config(home, certs, auth[1], tls=tls)
        command = ["ip", "netns", "exec", NETNS, ORTHANC, str(config)]
        cafile = certs.server.ca if tls else None
        log = home / "orthanc-load.log"
        with server_process(command, log, port=ORTHANC_HTTP_PORT, env=env) as proc:
            client = HttpsClient(NS_ADDR, ORTHANC_HTTP_PORT, cafile, basic_auth=auth)
            try:
                get(client, "/system")
            except (OSError, http.client.HTTPException) as exc:
                if not tls:
                    raise
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
                how = f"Orthanc exited with {proc.returncode}" if proc.returncode is not None else exc
                scheme = f"plain HTTP, as its HTTPS failed on the first request ({how})"
                continue
            for path in files:
                reply = client.request("POST", "/instances", path.read_bytes(), "application/dicom")
                if reply.status != 200:
                    raise BenchError(f"Orthanc POST /instances: HTTP {reply.status} {reply.text[:200]}")
                ids.append(json.loads(reply.body)["ID"])
            client.close()
        break
    return command, cafile, ids, scheme


def orthanc_previews(workdir: Path, files: Sequence[Path], certs: BenchPki, passes: list[Latencies]) -> str:
    """Upload `files` to a fresh Orthanc, restart it, time every preview once per pass.

    HTTPS if Orthanc's works, else plain HTTP. Returns what was run, for the notes.
    """
    with temp_dir("orthanc-", workdir) as home:
        auth = ("bench", secrets.token_urlsafe(12))
        command, cafile, ids, scheme = _upload(home, files, certs, auth)
        env = dict(os.environ)
        with server_process(command, home / "orthanc.log", port=ORTHANC_HTTP_PORT, env=env) as proc:
            client = HttpsClient(NS_ADDR, ORTHANC_HTTP_PORT, cafile, basic_auth=auth)
            for latencies in passes:
                cpu = cpu_seconds(proc.pid)
                for instance in ids:
                    reply = get(client, f"/instances/{instance}/preview")
                    if reply.status != 200 or reply.headers.get("content-type") != "image/png":
                        raise BenchError(f"Orthanc preview: HTTP {reply.status}")
                    latencies.ms.append(reply.ms)
                    latencies.nbytes.append(len(reply.body))
                latencies.cpu_s += cpu_seconds(proc.pid) - cpu
                latencies.cpu_known = True
            client.close()
        return scheme
