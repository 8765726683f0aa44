"""install.sh in its test mode (``--root DIR``): a real installation, its upgrade, a restore, its removal.

One installation is made for the whole module (pip installs the project and its dependencies
into a fresh virtualenv; pip's cache keeps that under a minute), then a second run upgrades it,
and the last test uninstalls it, so the tests run in file order. install.sh creates a user,
changes owners and switches users: these tests need root, and CI runs them as root.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, _free_port
from tests.data.make_series import make_ct_series
from tests.deploy.install.install_helpers import (
    HOST,
    INSTALL,
    NOBODY,
    PACKAGES,
    Installation,
    Rerun,
    _account,
    _one_line_failure,
    _snapshot,
    run_install,
)


@pytest.fixture(scope="module")
def installed() -> Iterator[Installation]:
    # Not under pytest's own 0700 temporary directory: the pacs user must reach the tree.
    root = Path(tempfile.mkdtemp(prefix="pacs-install-"))
    root.chmod(0o755)
    dicom_port, web_port = _free_port(), _free_port()
    try:
        result = run_install(
            "--root",
            str(root),
            "--hostname",
            HOST,
            "--dicom-port",
            str(dicom_port),
            "--web-port",
            str(web_port),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        uid, gid = (int(value) for value in _account(root, "passwd", "pacs")[2:4])
        yield Installation(root, result.stdout, dicom_port, web_port, uid, gid)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def rerun(installed: Installation) -> Rerun:
    # Stand in for old code: a changed module must be replaced by the source tree's.
    stale = installed.site_packages() / "pacs" / "cli" / "main.py"
    stale.write_text(stale.read_text() + "\nraise SystemExit('stale code')\n")
    keys_before, data_before = _snapshot(installed.keys), _snapshot(installed.data)
    result = run_install("--root", str(installed.root))
    return Rerun(result, keys_before, _snapshot(installed.keys), data_before, _snapshot(installed.data))


# -- the first run -------------------------------------------------------------------------------------


def test_first_run_prints_the_admin_one_time_password_and_the_next_steps(installed: Installation) -> None:
    out = installed.output
    passwords = re.findall(r"one-time password: (\S+)", out)
    assert len(passwords) == 1 and len(passwords[0]) >= 12, out
    assert "first admin    admin" in out
    assert f"https://{HOST}:{installed.web_port}/" in out
    assert re.search(r"sudo pacs modality add CT1 --host \S+ --issue-cert \./ct1-certs", out), out
    assert (
        f"echoscu +tls client.key client.crt +cf ca.crt -aet CT1 -aec PACS {HOST} {installed.dicom_port}"
        in out
    ), out
    assert "sudo pacs user add drsmith --role physician" in out
    assert str(installed.keys) in out and "offline copy" in out


def test_printed_password_is_the_first_admins(installed: Installation) -> None:
    (password,) = re.findall(r"one-time password: (\S+)", installed.output)
    check = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pacs.core.accounts import Accounts\n"
        "from pacs.core.config import load_settings\n"
        "from pacs.core.context import open_pacs\n"
        "pacs = open_pacs(load_settings(Path(sys.argv[1]), {}))\n"
        "try:\n"
        "    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)\n"
        "    ok = accounts.check_password('admin', sys.stdin.read(), '127.0.0.1').ok\n"
        "finally:\n"
        "    pacs.close()\n"
        "sys.exit(0 if ok else 3)\n"
    )
    result = installed.as_pacs(
        str(installed.venv / "bin/python"), "-c", check, str(installed.data), stdin=password
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_first_run_creates_every_path_with_its_owner_and_mode(installed: Installation) -> None:
    pacs = (installed.uid, installed.gid)

    def owner_and_mode(path: Path) -> tuple[int, int, int]:
        info = path.lstat()
        return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)

    assert owner_and_mode(installed.data) == (*pacs, 0o700)
    assert owner_and_mode(installed.keys) == (*pacs, 0o700)
    assert owner_and_mode(installed.keys.parent) == (0, installed.gid, 0o750)
    assert owner_and_mode(installed.root / "var" / "backups" / "pacs") == (*pacs, 0o700)
    assert owner_and_mode(installed.data / "pacs.toml") == (*pacs, 0o600)
    assert owner_and_mode(installed.unit) == (0, 0, 0o644)
    assert owner_and_mode(installed.wrapper) == (0, 0, 0o755)
    key_files = sorted(p.name for p in installed.keys.iterdir())
    assert "kek-0001.key" in key_files and "ca.key" in key_files and "server.key" in key_files
    for key in installed.keys.iterdir():
        assert owner_and_mode(key) == (*pacs, 0o600), key
    for path in [*installed.data.rglob("*"), *installed.keys.rglob("*")]:
        assert (path.lstat().st_uid, path.lstat().st_gid) == pacs, path
    # The code belongs to root and nobody else may change it.
    for path in [installed.venv, *installed.venv.rglob("*")]:
        info = path.lstat()
        assert info.st_uid == 0, path
        assert stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o022, path


def test_unit_is_the_shipped_one(installed: Installation) -> None:
    assert installed.unit.read_bytes() == (REPO / "deploy" / "pacs.service").read_bytes()


def test_the_daily_selfcheck_timer_and_its_service_are_the_shipped_ones(installed: Installation) -> None:
    for name in ("pacs-selfcheck.service", "pacs-selfcheck.timer"):
        path = installed.root / "etc/systemd/system" / name
        info = path.lstat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o644)
        assert path.read_bytes() == (REPO / "deploy" / name).read_bytes()


def test_pacs_is_a_locked_system_user_without_a_login_shell(installed: Installation) -> None:
    name, _, uid, gid, _, home, shell = _account(installed.root, "passwd", "pacs")
    assert (int(uid), int(gid)) == (installed.uid, installed.gid)
    assert 0 < int(uid) < 1000
    assert shell == "/usr/sbin/nologin"
    assert home == "/nonexistent" and not (installed.root / "nonexistent").exists()
    assert _account(installed.root, "shadow", name)[1].startswith("!")
    assert int(_account(installed.root, "group", "pacs")[2]) == installed.gid


def test_config_names_the_key_dir_outside_the_data_dir_and_the_chosen_ports(installed: Installation) -> None:
    config = tomllib.loads((installed.data / "pacs.toml").read_text())
    key_dir = Path(config["storage"]["key_dir"])
    assert key_dir == installed.keys
    assert not key_dir.is_relative_to(installed.data)
    assert config["dicom"]["port"] == installed.dicom_port
    assert config["web"]["port"] == installed.web_port
    assert config["server"]["hostname"] == HOST


def test_installed_pacs_verifies_the_new_archive(installed: Installation) -> None:
    pacs = str(installed.venv / "bin/pacs")
    verify = installed.as_pacs(pacs, "verify", "--data", str(installed.data))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all intact" in verify.stdout
    audit = installed.as_pacs(pacs, "audit", "verify", "--data", str(installed.data))
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_installed_code_holds_every_file_of_the_packages(installed: Installation) -> None:
    site = installed.site_packages()
    missing, different = [], []
    for package in PACKAGES:
        for source in sorted((REPO / package).rglob("*")):
            if not source.is_file() or "__pycache__" in source.parts:
                continue
            relative = source.relative_to(REPO)
            target = site / relative
            if not target.is_file():
                missing.append(str(relative))
            elif target.read_bytes() != source.read_bytes():
                different.append(str(relative))
    assert missing == [], f"not installed, add them to pyproject.toml's package-data: {missing}"
    assert different == []


# -- the admin command ---------------------------------------------------------------------------------


def test_admin_command_runs_as_pacs_and_hands_issued_certificates_to_the_caller(
    installed: Installation, tmp_path: Path
) -> None:
    outdir = tmp_path / "private" / "ct1-certs"  # under pytest's 0700 directory: pacs cannot reach it
    env = {"PATH": os.environ["PATH"], "SUDO_USER": "alice", "SUDO_UID": "4321", "SUDO_GID": "4322"}
    staging_before = set(glob.glob("/tmp/pacs-cert.*"))

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(installed.wrapper), *args], capture_output=True, text=True, timeout=120, cwd="/", env=env
        )

    added = admin("modality", "add", "CT1", "--host", "127.0.0.1", "--issue-cert", str(outdir))
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"echoscu +tls {outdir}/client.key {outdir}/client.crt +cf {outdir}/ca.crt" in added.stdout
    assert "/tmp/pacs-cert." not in added.stdout
    for name, mode in (("client.key", 0o600), ("client.crt", 0o644), ("ca.crt", 0o644)):
        info = (outdir / name).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4321, 4322, mode), name
    assert (outdir / "ca.crt").read_bytes() == (installed.data / "tls" / "ca.crt").read_bytes()
    assert set(glob.glob("/tmp/pacs-cert.*")) == staging_before

    again = admin("modality", "add", "CT2", "--host", "127.0.0.1", f"--issue-cert={outdir}")
    assert again.returncode != 0 and "already exists" in again.stderr
    shared = admin("modality", "add", "CT3", "--host", "127.0.0.1", "--issue-cert", "/tmp")
    assert shared.returncode != 0 and "writable by other users" in shared.stderr
    listed = admin("modality", "list")
    assert listed.returncode == 0 and "CT1" in listed.stdout
    assert "CT2" not in listed.stdout and "CT3" not in listed.stdout

    user = admin("user", "add", "drsmith", "--role", "physician")
    assert user.returncode == 0, user.stderr
    assert re.search(r"one-time password: \S{12,}", user.stdout)
    audit = admin("audit", "export")
    assert audit.returncode == 0, audit.stderr
    assert '"user_id": "alice@cli"' in audit.stdout

    for path in [*installed.data.rglob("*"), *installed.keys.rglob("*")]:
        assert (path.lstat().st_uid, path.lstat().st_gid) == (installed.uid, installed.gid), path


def test_admin_command_refuses_callers_who_are_not_root(installed: Installation) -> None:
    uid, gid = NOBODY
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            str(installed.wrapper),
            "user",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert result.returncode != 0
    assert result.stderr.strip() == "pacs: error: run it as root: sudo pacs ..."


# -- the second run: an upgrade --------------------------------------------------------------------------


def test_second_run_keeps_the_keys_byte_identical(rerun: Rerun) -> None:
    assert rerun.result.returncode == 0, rerun.result.stdout + rerun.result.stderr
    assert rerun.keys_before and rerun.keys_after == rerun.keys_before


def test_second_run_keeps_the_archive_and_prints_no_new_password(
    installed: Installation, rerun: Rerun
) -> None:
    assert rerun.result.returncode == 0, rerun.result.stderr
    assert rerun.data_after == rerun.data_before
    assert "one-time password:" not in rerun.result.stdout
    assert "creating the archive" not in rerun.result.stdout
    assert "upgraded" in rerun.result.stdout and str(installed.data) in rerun.result.stdout
    config = tomllib.loads((installed.data / "pacs.toml").read_text())
    assert (config["dicom"]["port"], config["web"]["port"]) == (installed.dicom_port, installed.web_port)


def test_second_run_replaces_the_installed_code(installed: Installation, rerun: Rerun) -> None:
    assert rerun.result.returncode == 0, rerun.result.stderr
    installed_cli = installed.site_packages() / "pacs" / "cli" / "main.py"
    assert installed_cli.read_bytes() == (REPO / "pacs" / "cli" / "main.py").read_bytes()
    users = installed.as_pacs(str(installed.venv / "bin/pacs"), "user", "list", "--data", str(installed.data))
    assert users.returncode == 0, users.stderr
    assert "admin" in users.stdout


# Run by the installed code as the pacs user: the archive's schema revision and the
# migrations its audit trail records.
MIGRATION_RECORDS = """
import json, sys
from pathlib import Path
from pacs.core.config import load_settings
from pacs.core.context import open_pacs

pacs = open_pacs(load_settings(Path(sys.argv[1]), {}))
print(pacs.database.revision())
for record in pacs.audit.records():
    details = json.loads(record.details)
    if details.get("what") == "index schema migrated":
        print(details["from"], details["to"])
pacs.close()
"""


def test_a_run_over_an_older_schema_migrates_it_before_the_service_starts(
    installed: Installation, rerun: Rerun
) -> None:
    python = str(installed.venv / "bin/python")
    set_back_script = (REPO / "tests" / "data" / "set_back_schema.py").read_text()
    set_back = installed.as_pacs(python, "-c", set_back_script, str(installed.data))
    assert set_back.returncode == 0, set_back.stderr
    older = set_back.stdout.strip()
    result = run_install("--root", str(installed.root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"index schema migrated from revision {older} to " in result.stdout
    assert not (installed.venv.parent / "venv.old").exists()
    records = installed.as_pacs(python, "-c", MIGRATION_RECORDS, str(installed.data))
    assert records.returncode == 0, records.stderr
    head, *migrations = records.stdout.split("\n")[:-1]
    assert head != older and migrations == [f"{older} {head}"]
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in installed.data.rglob("*")}
    assert owners == {(installed.uid, installed.gid)}


def test_a_failed_migration_puts_the_previous_code_back(installed: Installation) -> None:
    marker = installed.site_packages() / "pacs" / "previous-release"
    marker.write_text("")
    kek = installed.keys / "kek-0001.key"
    aside = installed.root / "kek-0001.key.aside"
    kek.rename(aside)
    try:
        result = run_install("--root", str(installed.root))
    finally:
        aside.rename(kek)
    assert result.returncode == 1, result.stdout + result.stderr
    failure = f"migrating the archive in {installed.data} failed; the previous version was put back"
    assert f"install.sh: error: {failure}" in result.stderr
    assert "no key-encryption key" in result.stderr
    assert marker.exists()
    assert not (installed.venv.parent / "venv.old").exists()


# -- restoring a backup over the installed archive --------------------------------------------------------


def _readable_series(installed: Installation, name: str, slices: int) -> Path:
    """A CT series the pacs user can read, in the test tree."""
    folder = installed.root / name
    make_ct_series(folder, slices=slices, rows=16, columns=16)
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def _private_file(path: Path, content: str, owner: tuple[int, int]) -> Path:
    path.write_text(content)
    path.chmod(0o600)
    os.chown(path, *owner)
    return path


@dataclass
class Restored:
    """A backup of the installed archive, a later change to it, and the --restore run."""

    backup: Path
    passphrase: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def restored(installed: Installation) -> Restored:
    pacs, data = str(installed.venv / "bin/pacs"), str(installed.data)
    first = _readable_series(installed, "ct-before-backup", 3)
    assert installed.as_pacs(pacs, "import", str(first), "--quiet", "--data", data).returncode == 0
    theirs = _private_file(
        installed.root / "pacs-pass", "a passphrase kept apart\n", (installed.uid, installed.gid)
    )
    backup = installed.root / "var/backups/pacs/appliance.pacsbak"
    made = installed.as_pacs(
        pacs, "backup", str(backup), "--passphrase-file", str(theirs), "--quiet", "--data", data
    )
    assert made.returncode == 0, made.stderr
    later = _readable_series(installed, "ct-after-backup", 2)
    assert installed.as_pacs(pacs, "import", str(later), "--quiet", "--data", data).returncode == 0
    roots = _private_file(installed.root / "root-pass", "a passphrase kept apart\n", (0, 0))
    result = run_install(
        "--root", str(installed.root), "--restore", str(backup), "--passphrase-file", str(roots)
    )
    return Restored(backup, roots, result)


def test_restore_replaces_the_archive_with_the_backup_and_sets_the_old_one_aside(
    installed: Installation, restored: Restored
) -> None:
    assert restored.result.returncode == 0, restored.result.stdout + restored.result.stderr
    assert f"The backup is restored into {installed.data}" in restored.result.stdout
    verify = installed.as_pacs(str(installed.venv / "bin/pacs"), "verify", "--data", str(installed.data))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "3 objects checked: all intact" in verify.stdout
    (aside,) = installed.data.parent.glob("pacs.replaced-*")
    (aside_keys,) = installed.keys.parent.glob("keys.replaced-*")
    assert len(list(aside.glob("blobs/??/*.blob"))) == 5
    assert sorted(p.name for p in aside_keys.iterdir()) == sorted(p.name for p in installed.keys.iterdir())
    owners = {
        (p.lstat().st_uid, p.lstat().st_gid) for d in (installed.data, installed.keys) for p in d.rglob("*")
    }
    assert owners == {(installed.uid, installed.gid)}
    config = tomllib.loads((installed.data / "pacs.toml").read_text())
    assert config["storage"]["key_dir"] == str(installed.keys)


def test_restore_with_a_wrong_passphrase_puts_the_archive_back(
    installed: Installation, restored: Restored
) -> None:
    before = _snapshot(installed.data, installed.keys)
    wrong = _private_file(installed.root / "wrong-pass", "not the passphrase\n", (0, 0))
    result = run_install(
        "--root", str(installed.root), "--restore", str(restored.backup), "--passphrase-file", str(wrong)
    )
    assert result.returncode == 1
    assert (
        f"install.sh: error: restoring {restored.backup} failed; the archive that was there is back in place"
        in (result.stderr)
    )
    assert "passphrase" in result.stderr
    assert _snapshot(installed.data, installed.keys) == before
    assert len(list(installed.data.parent.glob("pacs.replaced-*"))) == 1


def test_a_restore_interrupted_half_way_puts_the_archive_back(
    installed: Installation, restored: Restored
) -> None:
    before = _snapshot(installed.data, installed.keys)
    aside_before = set(installed.data.parent.glob("pacs.replaced-*"))
    # A passphrase "file" that never answers holds install.sh after the archive was set aside.
    stalled = installed.root / "stalled-pass"
    os.mkfifo(stalled, 0o600)
    command = [str(INSTALL), "--root", str(installed.root), "--restore", str(restored.backup)]
    run = subprocess.Popen(
        [*command, "--passphrase-file", str(stalled)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while set(installed.data.parent.glob("pacs.replaced-*")) == aside_before:
            assert run.poll() is None and time.monotonic() < deadline, (
                "install.sh never set the archive aside"
            )
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    finally:
        stalled.unlink()
    assert run.returncode == 130
    assert "the restore did not finish; the archive that was there is back in place" in err
    assert _snapshot(installed.data, installed.keys) == before
    assert set(installed.data.parent.glob("pacs.replaced-*")) == aside_before


def test_restore_of_a_missing_backup_is_refused_before_changing_anything(
    installed: Installation, restored: Restored, tmp_path: Path
) -> None:
    missing = tmp_path / "absent.pacsbak"
    line = _one_line_failure(run_install("--root", str(installed.root), "--restore", str(missing)))
    assert line == f"install.sh: error: {missing}: no such file"


# -- removal (last: it takes the installation away) --------------------------------------------------------


def test_uninstall_removes_code_unit_and_command_and_keeps_data_and_keys(
    installed: Installation, rerun: Rerun
) -> None:
    keys, data = _snapshot(installed.keys), _snapshot(installed.data)
    result = run_install("--uninstall", "--root", str(installed.root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (installed.root / "opt/pacs").exists()
    assert not installed.unit.exists()
    assert not installed.wrapper.exists()
    assert not (installed.root / "etc/systemd/system/pacs-selfcheck.timer").exists()
    assert not (installed.root / "etc/systemd/system/pacs-selfcheck.service").exists()
    assert _snapshot(installed.keys) == keys and keys
    assert _snapshot(installed.data) == data and data
    assert _account(installed.root, "passwd", "pacs")
    assert f"kept the archive in {installed.data}, the keys in {installed.keys}" in result.stdout
