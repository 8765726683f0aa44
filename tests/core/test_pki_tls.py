"""The certificates of ``pacs.core.pki`` work where they are used: a real mutual-TLS handshake through
Python's ``ssl`` module, and verification by the ``openssl`` command-line tool.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from pacs.core.pki import (
    create_ca,
    issue_client_cert,
)
from tests.core.pki_helpers import IO_TIMEOUT, OPENSSL, PkiFiles, write_issued

# --------------------------------------------------------------------------
# Real mutual TLS with Python's ssl module
# --------------------------------------------------------------------------


@dataclass
class Handshake:
    """What each side of one mutual-TLS connection attempt saw."""

    server_saw_cn: str | None = None
    tls_version: str | None = None
    server_error: OSError | None = None
    client_received: bytes | None = None
    client_error: OSError | None = None


def server_context(files: PkiFiles) -> ssl.SSLContext:
    """The PACS side: requires a client certificate issued by our CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(files.server_crt, files.server_key)
    context.load_verify_locations(cafile=files.ca_crt)
    return context


def client_context(ca_crt: Path, crt: Path, key: Path, max_version: ssl.TLSVersion) -> ssl.SSLContext:
    """The modality side: trusts only our CA and checks the host name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = max_version
    context.load_verify_locations(cafile=ca_crt)
    context.load_cert_chain(crt, key)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    return context


def peer_common_name(peer: dict[str, object]) -> str:
    """Extract the CN from ``SSLSocket.getpeercert()``'s dict form."""
    for rdn in peer["subject"]:  # type: ignore[attr-defined]
        for key, value in rdn:
            if key == "commonName":
                return value
    raise AssertionError(f"no commonName in {peer!r}")


def handshake(
    files: PkiFiles,
    client_crt: Path,
    client_key: Path,
    *,
    server_hostname: str = "localhost",
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> Handshake:
    """Run one TLS connection over 127.0.0.1 and report what both sides saw.

    The server, in a thread, records the client certificate's CN and sends
    ``b"ok"``; the client reads the reply. With TLS 1.3 a rejected client
    certificate only shows up on the client's first read, so errors are
    collected from both the handshake and the read.
    """
    result = Handshake()
    server_ctx = server_context(files)
    client_ctx = client_context(files.ca_crt, client_crt, client_key, max_version)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(IO_TIMEOUT)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(IO_TIMEOUT)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert()
                    assert peer is not None
                    result.server_saw_cn = peer_common_name(peer)
                    result.tls_version = tls.version()
                    tls.sendall(b"ok")
            except OSError as exc:
                result.server_error = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), IO_TIMEOUT) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                result.client_received = tls.recv(2)
        except OSError as exc:
            result.client_error = exc
        thread.join(IO_TIMEOUT)
        assert not thread.is_alive(), "TLS server thread hung"
    return result


TLS_VERSIONS = pytest.mark.parametrize(
    "max_version",
    [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
    ids=["tls1.2", "tls1.3"],
)


@TLS_VERSIONS
@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_mutual_tls_handshake_succeeds_and_server_sees_modality_cn(
    pki_files: PkiFiles, server_hostname: str, max_version: ssl.TLSVersion
) -> None:
    result = handshake(
        pki_files,
        pki_files.client_crt,
        pki_files.client_key,
        server_hostname=server_hostname,
        max_version=max_version,
    )
    assert result.server_error is None
    assert result.client_error is None
    assert result.client_received == b"ok"
    assert result.server_saw_cn == "CT_SCANNER_1"
    assert (
        result.tls_version
        == {
            ssl.TLSVersion.TLSv1_2: "TLSv1.2",
            ssl.TLSVersion.TLSv1_3: "TLSv1.3",
        }[max_version]
    )


def test_pacs_server_cert_also_works_as_tls_client_cert(pki_files: PkiFiles) -> None:
    """C-MOVE: the PACS connects out to a modality with its own certificate."""
    result = handshake(pki_files, pki_files.server_crt, pki_files.server_key)
    assert result.server_error is None
    assert result.client_received == b"ok"
    assert result.server_saw_cn == "localhost"


@TLS_VERSIONS
def test_client_cert_from_another_ca_is_rejected(
    tmp_path: Path, pki_files: PkiFiles, max_version: ssl.TLSVersion
) -> None:
    rogue_ca = create_ca("Rogue CA")
    rogue_crt, rogue_key = write_issued(tmp_path, "rogue", issue_client_cert(rogue_ca, "CT_SCANNER_1"))
    result = handshake(pki_files, rogue_crt, rogue_key, max_version=max_version)
    assert isinstance(result.server_error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in str(result.server_error)
    assert result.server_saw_cn is None
    assert result.client_received != b"ok"


def test_client_rejects_server_under_wrong_host_name(pki_files: PkiFiles) -> None:
    result = handshake(
        pki_files,
        pki_files.client_crt,
        pki_files.client_key,
        server_hostname="pacs.elsewhere.example",
    )
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(result.client_error)


# --------------------------------------------------------------------------
# Interoperability with the openssl command-line tool
# --------------------------------------------------------------------------


def openssl_verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``/usr/bin/openssl verify ARGS`` (fails the test if it's missing)."""
    assert OPENSSL.exists(), f"{OPENSSL} is required for interoperability tests"
    return subprocess.run(
        [str(OPENSSL), "verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_openssl_cli_verifies_server_cert_against_ca(pki_files: PkiFiles) -> None:
    done = openssl_verify("-CAfile", pki_files.ca_crt, pki_files.server_crt)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{pki_files.server_crt}: OK"


@pytest.mark.parametrize(
    ("which", "purpose"),
    [("server", "sslserver"), ("server", "sslclient"), ("client", "sslclient")],
)
def test_openssl_cli_accepts_cert_for_its_purposes_in_strict_mode(
    pki_files: PkiFiles, which: str, purpose: str
) -> None:
    cert = pki_files.server_crt if which == "server" else pki_files.client_crt
    done = openssl_verify("-x509_strict", "-purpose", purpose, "-CAfile", pki_files.ca_crt, cert)
    assert done.returncode == 0, done.stderr


def test_openssl_cli_refuses_modality_cert_as_server_cert(pki_files: PkiFiles) -> None:
    done = openssl_verify("-purpose", "sslserver", "-CAfile", pki_files.ca_crt, pki_files.client_crt)
    assert done.returncode != 0
    assert "unsuitable certificate purpose" in done.stderr
