"""The assessment's TLS profile: both ports of a running ``pacs serve`` probed as a scanner would.

A real ``pacs serve`` listens on free ports of 127.0.0.1. On both, the probe sees TLS 1.0 and
1.1 refused, TLS 1.2 and 1.3 accepted, exactly the BCP 195 suites for the archive's EC key
(checked against ``openssl s_client`` as an independent client), a client certificate
required on DICOM only, and the certificate the server sends. A stopped archive is
described from its configuration instead.
"""

from __future__ import annotations

import re
import select
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.config import load_settings
from pacs.core.context import Context, initialise, open_pacs
from pacs.ops import assessment
from pacs.ops.assessment_tls import PortProfile
from tests.conftest import _free_port, pacs_serve

ECDSA_SUITES = {
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}
OPENSSL = "/usr/bin/openssl"
BOUND = {"PACS_DICOM_BIND": "127.0.0.1", "PACS_WEB_BIND": "127.0.0.1"}


@pytest.fixture(scope="module")
def ports() -> dict[str, str]:
    """The environment that puts both ports on free ports of 127.0.0.1."""
    return {"PACS_DICOM_PORT": str(_free_port()), "PACS_WEB_PORT": str(_free_port())}


@contextmanager
def serving(root: Path, ports: dict[str, str]) -> Iterator[Context]:
    """A running ``pacs serve`` of a new archive under `root`, and the archive opened with its ports."""
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    process = pacs_serve(settings.data_dir, root / "serve.log", PACS_DICOM_WORKERS="1", **ports)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready and "web viewer on https://" in process.stdout.readline(), (
            root / "serve.log"
        ).read_text()
        pacs = open_pacs(load_settings(settings.data_dir, {**ports, **BOUND}))
        try:
            yield pacs
        finally:
            pacs.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, str]) -> Iterator[Context]:
    """A running ``pacs serve``, and the archive opened with the same ports."""
    with serving(tmp_path_factory.mktemp("served"), ports) as pacs:
        yield pacs


@pytest.fixture(scope="module")
def profiles(served: Context) -> dict[str, PortProfile]:
    return {profile.name: profile for profile in assessment.tls_profiles(served)}


def _accepted(profile: PortProfile) -> dict[str, bool]:
    return {result.version: result.accepted for result in profile.versions}


def _suites(profile: PortProfile, version: str) -> set[str]:
    (result,) = [r for r in profile.versions if r.version == version]
    return set(result.ciphers)


def _openssl_accepts(port: int, *options: str) -> bool:
    """Whether ``openssl s_client`` completes a handshake with `options` (no client certificate needed)."""
    done = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *options],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "CONNECTION ESTABLISHED" in done.stderr


@pytest.mark.parametrize("port", ["DICOM", "web"])
def test_a_running_port_refuses_tls_1_0_and_1_1_and_accepts_1_2_and_1_3(
    profiles: dict[str, PortProfile], port: str
) -> None:
    profile = profiles[port]
    assert profile.running is True
    assert _accepted(profile) == {"TLS 1.0": False, "TLS 1.1": False, "TLS 1.2": True, "TLS 1.3": True}


@pytest.mark.parametrize("port", ["DICOM", "web"])
def test_a_running_port_negotiates_exactly_the_bcp195_suites_of_its_ec_key(
    profiles: dict[str, PortProfile], port: str
) -> None:
    profile = profiles[port]
    assert _suites(profile, "TLS 1.2") == ECDSA_SUITES
    assert _suites(profile, "TLS 1.3") <= TLS13_SUITES and _suites(profile, "TLS 1.3")
    assert _suites(profile, "TLS 1.0") == set() and _suites(profile, "TLS 1.1") == set()


def test_openssl_agrees_with_the_probe_on_the_web_port(
    served: Context, profiles: dict[str, PortProfile]
) -> None:
    port = profiles["web"].port
    assert _openssl_accepts(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")
    assert not _openssl_accepts(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256")
    assert not _openssl_accepts(port, "-tls1_1", "-cipher", "ALL:@SECLEVEL=0")
    assert _openssl_accepts(port, "-tls1_3")


def test_only_the_dicom_port_requires_a_client_certificate(profiles: dict[str, PortProfile]) -> None:
    assert profiles["DICOM"].client_certificate_required is True
    assert profiles["web"].client_certificate_required is False


def test_the_chain_is_the_certificate_the_server_sent_and_its_ca(profiles: dict[str, PortProfile]) -> None:
    for profile in profiles.values():
        server, ca = profile.chain
        assert server.role == "server certificate (as sent)"
        assert server.subject == "CN=localhost"
        assert "localhost" in server.names and "127.0.0.1" in server.names
        assert server.key == "EC secp256r1 (256 bits)"
        assert server.signature.startswith("ecdsa-with-SHA256")
        assert ca.subject == server.issuer
        assert ca.not_after > server.not_after


def test_a_stopped_archive_is_described_from_its_configuration(tmp_path: Path) -> None:
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    environ = {"PACS_DICOM_PORT": str(_free_port()), "PACS_WEB_PORT": str(_free_port())}
    pacs = open_pacs(load_settings(settings.data_dir, environ))
    try:
        found = {profile.name: profile for profile in assessment.tls_profiles(pacs)}
    finally:
        pacs.close()
    for profile in found.values():
        assert profile.running is False
        assert _accepted(profile) == {"TLS 1.0": False, "TLS 1.1": False, "TLS 1.2": True, "TLS 1.3": True}
        assert _suites(profile, "TLS 1.2") >= ECDSA_SUITES
        assert _suites(profile, "TLS 1.3") == TLS13_SUITES
        assert profile.chain[0].role == "server certificate (tls/server.crt)"
    assert found["DICOM"].client_certificate_required is True
    assert found["web"].client_certificate_required is False


def test_the_report_of_a_running_archive_shows_both_ports_probed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = {"PACS_DICOM_PORT": str(_free_port()), "PACS_WEB_PORT": str(_free_port())}
    out = tmp_path / "assessment.html"
    with serving(tmp_path, ports) as pacs:
        code = main(
            ["selfcheck", "--data", str(pacs.settings.data_dir), "--report", str(out)],
            environ={**ports, **BOUND},
        )
    assert code == 0
    html = out.read_text()
    assert html.count("Probed on the wire") == 2 and "Not running" not in html and "Not probed" not in html
    for port in ("dicom", "web"):
        section = re.search(rf'<section class="port" id="tls-{port}">(.*?)</section>', html, re.S)
        assert section, port
        rows = dict(
            re.findall(r'<tr data-version="([^"]+)"><td>[^<]*</td>\s*<td>(.*?)</td>', section.group(1), re.S)
        )
        assert ["refused" in rows["TLS 1.0"], "refused" in rows["TLS 1.1"]] == [True, True]
        assert ["accepted" in rows["TLS 1.2"], "accepted" in rows["TLS 1.3"]] == [True, True]
        assert "ECDHE-ECDSA-CHACHA20-POLY1305" in section.group(1)


def test_a_probe_the_connection_throttle_cuts_short_falls_back_to_the_configuration(
    served: Context, profiles: dict[str, PortProfile]
) -> None:
    port = profiles["DICOM"].port
    for _ in range(12):  # failed connections: the DICOM port then refuses this address for a while
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    again = {profile.name: profile for profile in assessment.tls_profiles(served)}
    assert again["DICOM"].running is False and "connection throttle" in again["DICOM"].note
    assert _accepted(again["DICOM"]) == {"TLS 1.0": False, "TLS 1.1": False, "TLS 1.2": True, "TLS 1.3": True}
    assert again["web"].running is True and again["web"].note == ""
