"""The PKI's files (``pacs.core.pki``): private keys and certificates written with their modes, and
every unreadable file refused with an error naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pacs.core.pki import (
    Issued,
    PKIError,
    create_ca,
    issue_server_cert,
    load_certificate,
    load_certificates,
    load_private_key,
    write_certificate,
    write_private_key,
)
from tests.core.pki_helpers import PkiFiles, umask

# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def test_private_key_is_written_0600_and_never_overwritten(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "ca.key"
    with umask(0):
        write_private_key(path, ca.key)
    assert path.stat().st_mode & 0o777 == 0o600
    original = path.read_bytes()

    with pytest.raises(FileExistsError):
        write_private_key(path, create_ca().key)
    assert path.read_bytes() == original


def test_private_key_write_never_follows_a_symlink(tmp_path: Path, ca: Issued) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    link = tmp_path / "ca.key"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_private_key(link, ca.key)
    assert target.read_bytes() == b"precious"


def test_private_key_is_unencrypted_pkcs8_pem_and_round_trips(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "ca.key"
    write_private_key(path, ca.key)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = load_private_key(path)
    assert loaded.private_numbers() == ca.key.private_numbers()


def test_certificate_is_written_0644_pem_and_round_trips(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "ca.crt"
    with umask(0o077):
        write_certificate(path, ca.cert)
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert load_certificate(path) == ca.cert


def test_certificate_is_replaced_whole_on_renewal(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "server.crt"
    write_certificate(path, issue_server_cert(ca, "pacs").cert)
    renewed = issue_server_cert(ca, "pacs").cert
    write_certificate(path, renewed)
    assert load_certificates(path) == [renewed]
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["server.crt"]


def test_load_certificates_reads_a_bundle_in_order(tmp_path: Path, ca: Issued) -> None:
    other = create_ca("Other CA")
    path = tmp_path / "bundle.pem"
    path.write_bytes(
        ca.cert.public_bytes(serialization.Encoding.PEM) + other.cert.public_bytes(serialization.Encoding.PEM)
    )
    assert load_certificates(path) == [ca.cert, other.cert]
    assert load_certificate(path) == ca.cert


LOADERS = pytest.mark.parametrize(
    "loader",
    [load_private_key, load_certificate, load_certificates],
    ids=["key", "certificate", "certificates"],
)


def assert_names_file_on_one_line(error: PKIError, path: Path) -> None:
    """The error is a ValueError whose single-line message names ``path``."""
    assert isinstance(error, ValueError)
    message = str(error)
    assert str(path) in message
    assert "\n" not in message


@LOADERS
def test_garbage_pem_gives_error_naming_the_file(tmp_path: Path, loader: Callable[[Path], object]) -> None:
    path = tmp_path / "garbage.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END")
    with pytest.raises(PKIError) as caught:
        loader(path)
    assert_names_file_on_one_line(caught.value, path)


@LOADERS
def test_missing_file_gives_error_naming_the_file(tmp_path: Path, loader: Callable[[Path], object]) -> None:
    path = tmp_path / "absent.pem"
    with pytest.raises(PKIError) as caught:
        loader(path)
    assert_names_file_on_one_line(caught.value, path)
    assert "cannot read" in str(caught.value)


@LOADERS
def test_empty_file_gives_error_naming_the_file(tmp_path: Path, loader: Callable[[Path], object]) -> None:
    path = tmp_path / "empty.pem"
    path.touch()
    with pytest.raises(PKIError) as caught:
        loader(path)
    assert_names_file_on_one_line(caught.value, path)


def test_certificate_is_not_accepted_as_private_key(
    pki_files: PkiFiles,
) -> None:
    with pytest.raises(PKIError) as caught:
        load_private_key(pki_files.ca_crt)
    assert_names_file_on_one_line(caught.value, pki_files.ca_crt)


@pytest.mark.parametrize("loader", [load_certificate, load_certificates])
def test_private_key_is_not_accepted_as_certificate(
    pki_files: PkiFiles, loader: Callable[[Path], object]
) -> None:
    with pytest.raises(PKIError) as caught:
        loader(pki_files.server_key)
    assert_names_file_on_one_line(caught.value, pki_files.server_key)


def test_der_certificate_is_not_accepted_as_pem(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "ca.der"
    path.write_bytes(ca.cert.public_bytes(serialization.Encoding.DER))
    with pytest.raises(PKIError) as caught:
        load_certificate(path)
    assert_names_file_on_one_line(caught.value, path)


def test_encrypted_private_key_is_refused(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "encrypted.key"
    path.write_bytes(
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(PKIError, match="unencrypted") as caught:
        load_private_key(path)
    assert_names_file_on_one_line(caught.value, path)


def test_non_ec_private_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa.key"
    path.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(PKIError, match="not an EC key") as caught:
        load_private_key(path)
    assert_names_file_on_one_line(caught.value, path)
