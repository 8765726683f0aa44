"""Helpers of the install.sh tests: running it, the installation it makes, snapshots and one-line failures."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

INSTALL = REPO / "install.sh"
HOST = "pacs.example.test"
PACKAGES = ("pacs", "storage", "webviewer")
OPTIONS = {
    "--hostname",
    "--dicom-port",
    "--web-port",
    "--python",
    "--uninstall",
    "--root",
    "--os-release",
    "--restore",
    "--passphrase-file",
    "--help",
}
# (uid, gid) of nobody/nogroup, for the checks that must not run as root.
NOBODY = ("65534", "65534")


def run_install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run install.sh from / (as an admin would, away from the source tree)."""
    return subprocess.run(
        [str(INSTALL), *args], capture_output=True, text=True, timeout=900, cwd="/", env=env
    )


@dataclass
class Installation:
    """A test installation under `root`, and what install.sh printed when it made it."""

    root: Path
    output: str
    dicom_port: int
    web_port: int
    uid: int
    gid: int

    @property
    def data(self) -> Path:
        return self.root / "var/lib/pacs"

    @property
    def keys(self) -> Path:
        return self.root / "etc/pacs/keys"

    @property
    def venv(self) -> Path:
        return self.root / "opt/pacs/venv"

    @property
    def unit(self) -> Path:
        return self.root / "etc/systemd/system/pacs.service"

    @property
    def wrapper(self) -> Path:
        return self.root / "usr/local/bin/pacs"

    def site_packages(self) -> Path:
        (found,) = self.venv.glob("lib/python3.*/site-packages")
        return found

    def as_pacs(self, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `command` as the root's pacs user (its uid need not exist on this machine)."""
        switch = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        return subprocess.run(
            [*switch, *command], capture_output=True, text=True, timeout=120, cwd="/", input=stdin
        )


def _account(root: Path, database: str, name: str) -> list[str]:
    for line in (root / "etc" / database).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"no {name} in {root}/etc/{database}")


def _snapshot(*directories: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every file under `directories`: its SHA-256, mode, owner and group."""
    files = {}
    for directory in directories:
        for path in sorted(directory.rglob("*")):
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            files[str(path)] = (digest, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return files


@dataclass
class Rerun:
    """The second run of install.sh on an installation, with the state before and after it."""

    result: subprocess.CompletedProcess[str]
    keys_before: dict[str, tuple[str, int, int, int]]
    keys_after: dict[str, tuple[str, int, int, int]]
    data_before: dict[str, tuple[str, int, int, int]]
    data_after: dict[str, tuple[str, int, int, int]]


def _one_line_failure(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("install.sh: error: ")
    return lines[0]


def _fake_python(directory: Path, version: str) -> Path:
    """A stand-in interpreter that reports `version` for install.sh's version probe."""
    fake = directory / "python3"
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(0o755)
    return fake
