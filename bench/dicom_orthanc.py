"""Orthanc for ``bench/dicom_ingest.py`` and ``bench/web_viewer.py``, in a network namespace of its own.

Orthanc cannot bind to loopback only, so it runs in the namespace ``pacsbench`` behind a
veth pair 10.200.0.1 (here) / 10.200.0.2 (there), MTU 65535 like loopback. The namespace
and the veth pair are torn down when the block ends, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import temp_dir
from bench.dicom_servers import NS_ADDR, BenchPki, Target, run, server_process

ORTHANC = "/usr/sbin/Orthanc"
NETNS = "pacsbench"
VETH_HOST, VETH_NS = "pacsbench0", "pacsbench1"
HOST_ADDR = "10.200.0.1"
ORTHANC_PORT = 4242


def orthanc_unavailable(skip: bool) -> str:
    """Why the Orthanc rows cannot run ('' when they can)."""
    if skip:
        return "--skip-orthanc"
    if not Path(ORTHANC).exists():
        return f"{ORTHANC} not found; install it with 'apt-get update && apt-get install orthanc'"
    if os.geteuid() != 0:
        return "a network namespace needs root"
    if not shutil.which("ip"):
        return "no 'ip' command (apt-get install iproute2)"
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


@contextmanager
def orthanc_server(workdir: Path, clients: int, certs: BenchPki) -> Iterator[Target]:
    """A fresh Orthanc in the namespace: DICOM TLS with client certificates required, SyncStorageArea on."""
    with temp_dir("orthanc-", workdir) as home:
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
            peers = [(certs.client, f"BENCHCT{number + 1}") for number in range(clients)]
            yield Target(
                proc, NS_ADDR, ORTHANC_PORT, "ORTHANC", peers, "orthanc", home, log=home / "orthanc.log",
                after=lambda: f"{sum(path.is_file() for path in storage.rglob('*'))} files in its storage",
            )  # fmt: skip
