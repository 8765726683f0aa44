"""What install.sh refuses before it creates anything: one line on stderr, a non-zero status.

Unsupported systems and Pythons, ports in use, a caller who is not root, keys without an archive,
bad arguments; and its help and shell scripts. These tests need root, and CI runs them as root.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.deploy.install.install_helpers import (
    INSTALL,
    NOBODY,
    OPTIONS,
    _fake_python,
    _one_line_failure,
    run_install,
)

# -- refusals: one line, non-zero, nothing created --------------------------------------------------------


@pytest.mark.parametrize(
    "os_release",
    [
        'ID=ubuntu\nVERSION_ID="20.04"\nPRETTY_NAME="Ubuntu 20.04.6 LTS"\n',
        'ID=debian\nVERSION_ID="11"\nPRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\n',
        'ID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40"\n',
        'ID=debian\nPRETTY_NAME="Debian GNU/Linux trixie/sid"\n',
    ],
)
def test_unsupported_system_is_refused_before_anything_is_created(tmp_path: Path, os_release: str) -> None:
    fake = tmp_path / "os-release"
    fake.write_text(os_release)
    root = tmp_path / "root"
    line = _one_line_failure(run_install("--root", str(root), "--os-release", str(fake)))
    assert "unsupported system" in line and "Debian 12" in line and "Ubuntu 22.04" in line
    assert not root.exists()


@pytest.mark.parametrize(
    "os_release",
    ['ID=ubuntu\nVERSION_ID="22.04"\n', 'ID=ubuntu\nVERSION_ID="24.04"\n', 'ID="debian"\nVERSION_ID="13"\n'],
)
def test_supported_systems_pass_the_system_check(tmp_path: Path, os_release: str) -> None:
    fake = tmp_path / "os-release"
    fake.write_text(os_release)
    old_python = _fake_python(tmp_path, "3.10")
    root = tmp_path / "root"
    line = _one_line_failure(
        run_install("--root", str(root), "--os-release", str(fake), "--python", str(old_python))
    )
    assert "unsupported system" not in line and "Python 3.10" in line  # refused one check later
    assert not root.exists()


def test_python_older_than_3_11_is_refused_naming_the_package_to_install(tmp_path: Path) -> None:
    root = tmp_path / "root"
    line = _one_line_failure(
        run_install("--root", str(root), "--python", str(_fake_python(tmp_path, "3.10")))
    )
    assert "3.11 or newer" in line and "apt-get install python3.11 python3.11-venv" in line
    assert not root.exists()


def test_missing_python_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    line = _one_line_failure(run_install("--root", str(root), "--python", str(tmp_path / "no-such-python3")))
    assert "not found" in line and "python3.11" in line
    assert not root.exists()


def test_python_the_service_user_cannot_run_is_refused(tmp_path: Path) -> None:
    # tmp_path is private to root, like a pyenv interpreter under /root.
    private = tmp_path / "python3"
    private.write_text('#!/bin/sh\nexec /usr/bin/python3 "$@"\n')
    private.chmod(0o700)
    root = tmp_path / "root"
    line = _one_line_failure(run_install("--root", str(root), "--python", str(private)))
    assert "cannot be run by other users" in line
    assert not root.exists()


@pytest.mark.parametrize(("flag", "what"), [("--dicom-port", "DICOM"), ("--web-port", "HTTPS")])
def test_port_in_use_by_another_program_is_refused(tmp_path: Path, flag: str, what: str) -> None:
    root = tmp_path / "root"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_failure(run_install("--root", str(root), flag, str(port)))
    assert f"the {what} port {port} is already in use by " in line and flag in line
    assert not root.exists()


def test_non_root_caller_is_refused(tmp_path: Path) -> None:
    uid, gid = NOBODY
    root = tmp_path / "root"
    result = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", str(INSTALL), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert "run it as root" in _one_line_failure(result)
    assert not root.exists()


def test_keys_without_an_archive_are_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "root"
    kek = root / "etc/pacs/keys/kek-0001.key"
    kek.parent.mkdir(parents=True)
    kek.write_bytes(b"\x01" * 32)
    line = _one_line_failure(run_install("--root", str(root)))
    assert "holds keys" in line and "never overwrites keys" in line
    assert kek.read_bytes() == b"\x01" * 32
    assert sorted(p.name for p in root.iterdir()) == ["etc"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--bogus"], "unknown option --bogus"),
        (["--dicom-port", "http"], "not a port number"),
        (["--web-port", "70000"], "not a port number"),
        (["--dicom-port", "104"], "cannot listen below 1024"),
        (["--dicom-port", "12762", "--web-port", "12762"], "must differ"),
        (["--hostname", "bad name;rm"], "not a host name"),
        (["--uninstall", "--hostname", "x"], "--uninstall takes no other option"),
        (["--root"], "--root needs a value"),
        (["--restore", "b.pacsbak", "--web-port", "18443"], "--restore takes no other option"),
        (["--passphrase-file", "pass"], "--passphrase-file goes with --restore"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], reason: str) -> None:
    root = tmp_path / "root"
    if "--root" not in args:
        args = [*args, "--root", str(root)]
    line = _one_line_failure(run_install(*args), status=2)
    assert reason in line
    assert not root.exists()


def test_help_documents_every_option() -> None:
    result = run_install("--help")
    assert result.returncode == 0 and result.stderr == ""
    documented = set(re.findall(r"^\s+(?:-h, )?(--[a-z-]+)", result.stdout, re.MULTILINE))
    assert documented == OPTIONS
    # ...and the options the script accepts are exactly those.
    script = INSTALL.read_text()
    accepted = set(re.findall(r"^\s+((?:-h \| )?--[a-z-]+(?: \| --[a-z-]+)*)\)", script, re.MULTILINE))
    flat = {option for pattern in accepted for option in pattern.split(" | ") if option.startswith("--")}
    assert flat == OPTIONS


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: apt-get install shellcheck"
    scripts = [INSTALL, *sorted((REPO / "deploy").glob("*.sh"))]
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
