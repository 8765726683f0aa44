"""The first hour with the archive: host names, the ports ``init`` and ``serve`` print, storescu.

The README's quick start tells a newcomer to pick ``--hostname``; ``init`` refuses what no
certificate can name and puts an address in as an address, a name as a name. ``init`` and
``serve`` print the ports and the URL really in use (with ``PACS_*`` overrides). The
README's storescu command for a compressed file is run as written against a running archive.
Certificates issued into a git clone are git-ignored, and the command says where they are.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pydicom
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from pydicom.data import get_testdata_file

from pacs.cli import main
from pacs.core import pki
from pacs.core.context import CA_CERT, SERVER_CERT, initialise
from storage.errors import NotFoundError
from tests.cli.cli_helpers import _one_line_error, _run
from tests.conftest import REPO, RunningDicom, _free_port, pacs_serve, read_stored

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _issued(data: Path) -> x509.Certificate:
    return pki.load_certificate(data / "tls" / SERVER_CERT)


def _names(certificate: x509.Certificate) -> tuple[list[str], list[ipaddress._BaseAddress]]:
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sans.get_values_for_type(x509.DNSName), sans.get_values_for_type(x509.IPAddress)


# -- host names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostname",
    ["my host", "-x", "a..b", "a" * 254, "pacs_1.clinic", "pacs.clinic.", "1.2.3", "fe80::1%eth0", "x" * 65],
)
def test_init_refuses_a_host_name_no_certificate_can_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hostname: str
) -> None:
    data = tmp_path / "pacs"
    code, _, err = _run(capsys, "init", "--data", str(data), f"--hostname={hostname}")
    assert code != 0
    line = _one_line_error(err)
    assert "host name" in line and ("DNS name" in line or "64 characters" in line), line
    assert not data.exists()


def test_init_puts_an_ip_address_in_the_certificate_as_an_ip_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pacs"
    code, out, _ = _run(capsys, "init", "--data", str(data), "--hostname", "192.168.1.20")
    assert code == 0
    dns, addresses = _names(_issued(data))
    assert ipaddress.ip_address("192.168.1.20") in addresses
    assert "192.168.1.20" not in dns
    assert "https://192.168.1.20:8443/" in out


def test_init_puts_a_name_in_the_certificate_as_a_dns_name_plus_localhost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pacs"
    code, out, _ = _run(capsys, "init", "--data", str(data), "--hostname", "pacs-1.clinic.example")
    assert code == 0
    certificate = _issued(data)
    dns, addresses = _names(certificate)
    assert dns == ["pacs-1.clinic.example", "localhost"]
    assert set(addresses) == {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == "pacs-1.clinic.example"
    assert "certificate    for pacs-1.clinic.example (and localhost, 127.0.0.1, ::1)" in out


def test_init_accepts_an_ipv6_address_and_a_64_character_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "init", "--data", str(tmp_path / "v6"), "--hostname", "fd00::20")[0] == 0
    assert ipaddress.ip_address("fd00::20") in _names(_issued(tmp_path / "v6"))[1]
    name = ("a" * 30) + "." + ("b" * 33)
    assert _run(capsys, "init", "--data", str(tmp_path / "long"), "--hostname", name)[0] == 0
    assert _names(_issued(tmp_path / "long"))[0][0] == name


# -- the ports printed ------------------------------------------------------------------------------


def test_init_prints_the_ports_and_url_of_the_environment_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"PACS_WEB_PORT": "9443", "PACS_DICOM_PORT": "11112", "PACS_DICOM_PLAINTEXT_PORT": "11104"}
    argv = ["init", "--data", str(tmp_path / "pacs"), "--hostname", "pacs.clinic.example"]
    assert main(argv, environ=environ) == 0
    out = capsys.readouterr().out
    assert "web            https://pacs.clinic.example:9443/" in out
    assert "DICOM TLS port 11112, plaintext port 11104 for legacy nodes" in out
    assert "8443" not in out and "2762" not in out


def _tls_answers(port: int, ca: Path) -> str:
    """The subject CN of the certificate the server on `port` presents, verified against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    certificate = x509.load_der_x509_certificate(der)
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_prints_the_host_name_url_and_the_ports_it_listens_on(tmp_path: Path, workers: str) -> None:
    data = tmp_path / "pacs"
    initialise(data, ae_title="PACS", hostname="pacs.clinic.example", db_url="", user="test")
    port, web_port, plaintext = _free_port(), _free_port(), _free_port()
    process = pacs_serve(
        data,
        tmp_path / "serve.log",
        PACS_DICOM_PORT=str(port),
        PACS_WEB_PORT=str(web_port),
        PACS_DICOM_PLAINTEXT_PORT=str(plaintext),
        PACS_DICOM_WORKERS=workers,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"DICOM TLS listening on 127.0.0.1:{port} as PACS" in banner, (
            tmp_path / "serve.log"
        ).read_text()
        assert f"plaintext port {plaintext} for legacy nodes" in banner
        assert (
            f"web viewer on https://pacs.clinic.example:{web_port}/ (listening on 127.0.0.1:{web_port})"
            in banner
        )
        assert "8443" not in banner and "2762" not in banner
        # Printed once bound: both ports answer TLS with the archive's certificate at once.
        for listening in (web_port, port):
            assert _tls_answers(listening, data / "tls" / CA_CERT) == "pacs.clinic.example"
    finally:
        process.terminate()
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()


# -- storescu as the README says ----------------------------------------------------------------------


def _readme_storescu() -> list[str]:
    """The README's storescu command line for a compressed file, split as the shell would."""
    readme = (REPO / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("TCP_NODELAY=1 storescu ")]
    return shlex.split(line.removeprefix("TCP_NODELAY=1 "))


def _as_run_here(argv: list[str], dicom: RunningDicom, certs: Path, sample: Path) -> list[str]:
    """`argv` with the README's placeholders (certificates, host, port, file) made this test's."""
    host = argv.index("pacs.example")
    assert argv[host + 1] == "2762" and argv[-1] == "jpeg-baseline.dcm", argv
    concrete = [arg.replace("ct1-certs/", f"{certs}/") for arg in argv[:host]]
    return ["/usr/bin/storescu", *concrete[1:], "127.0.0.1", str(dicom.port), str(sample)]


def test_readme_storescu_command_stores_a_jpeg_baseline_file(dicom: RunningDicom) -> None:
    node = dicom.enrol("CT1")
    sample = Path(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm"))
    sent = pydicom.dcmread(sample)
    assert sent.file_meta.TransferSyntaxUID == JPEG_BASELINE
    argv = _as_run_here(_readme_storescu(), dicom, node.directory, sample)
    result = subprocess.run(argv, env=DCMTK_ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Store Failed" not in result.stderr, result.stderr
    stored = read_stored(dicom.pacs, sent.SOPInstanceUID)
    assert stored.file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert stored.PixelData == sent.PixelData


def test_storescu_without_the_transfer_syntax_option_cannot_convert_a_jpeg_file(dicom: RunningDicom) -> None:
    node = dicom.enrol("CT1")
    sample = Path(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm"))
    argv = [
        a for a in _as_run_here(_readme_storescu(), dicom, node.directory, sample) if a not in ("-xy", "-R")
    ]
    result = subprocess.run(argv, env=DCMTK_ENV, capture_output=True, text=True, timeout=60)
    assert "unable to convert dataset from 'JPEG Baseline'" in result.stderr, result.stderr
    assert "Store Failed" in result.stderr
    with pytest.raises(NotFoundError):
        read_stored(dicom.pacs, pydicom.dcmread(sample).SOPInstanceUID)


# -- certificates issued into a clone --------------------------------------------------------------


def _clone(tmp_path: Path) -> Path:
    """A git work tree holding this repository's .gitignore, as a clone would."""
    clone = tmp_path / "clone"
    clone.mkdir()
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    shutil.copy(REPO / ".gitignore", clone / ".gitignore")
    return clone


def _untracked(clone: Path) -> list[str]:
    status = subprocess.run(
        ["git", "-C", str(clone), "status", "--porcelain", "--untracked-files=all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line[3:] for line in status.splitlines()]


@pytest.mark.parametrize("outdir", ["ct1-certs", "modality/files"])
def test_certificates_issued_into_a_clone_are_not_offered_to_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], outdir: str
) -> None:
    clone = _clone(tmp_path)
    data = clone / "pacs-data"
    assert _run(capsys, "init", "--data", str(data))[0] == 0
    out_path = clone / outdir
    code, out, _ = _run(
        capsys,
        "modality",
        "add",
        "CT1",
        "--host",
        "127.0.0.1",
        "--issue-cert",
        str(out_path),
        "--data",
        str(data),
    )
    assert code == 0
    assert (out_path / "client.key").is_file()
    offered = _untracked(clone)
    assert not [path for path in offered if path.endswith(".key")], offered
    assert not [path for path in offered if path.startswith("pacs-data/")], offered
    assert re.search(
        rf"WARNING: {re.escape(str(out_path))} is inside the git work tree {re.escape(str(clone))}", out
    )


def test_certificates_issued_outside_a_work_tree_need_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pacs-data"
    assert _run(capsys, "init", "--data", str(data))[0] == 0
    code, out, _ = _run(
        capsys,
        "modality",
        "add",
        "CT1",
        "--host",
        "127.0.0.1",
        "--issue-cert",
        str(tmp_path / "ct1"),
        "--data",
        str(data),
    )
    assert code == 0 and "client.key" in out
    assert "WARNING" not in out
