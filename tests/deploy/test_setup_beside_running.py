"""The README's two commands on one machine: the tests' setup beside a running archive.

In a copy of this working tree, the first command installs and starts the archive as the
README writes it; ``scripts/dev-setup.sh`` (the second command's setup) then runs beside it,
and the archive must go on serving its pages, static files and templates. An old layout (a
regular install in ``.venv``, which the setup's editable reinstall would delete under a
running server) is refused before anything is touched.
"""

from __future__ import annotations

import http.client
import os
import select
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, _free_port

INSTALL_TIMEOUT = 900.0
PAGES = ("/login", "/static/app.css", "/static/viewer.js")


def _copy_of_this_tree(destination: Path) -> Path:
    """The files git would see in this working tree (tracked and new, not ignored), copied."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def _environment(**settings: str) -> dict[str, str]:
    """This environment without an active virtualenv, plus `settings`."""
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, **settings}


def _readme_first_command() -> str:
    readme = (REPO / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("python3 -m venv ")]
    return line


def _status(port: int, ca: Path, path: str) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _await_banner(process: subprocess.Popen[str], log: Path) -> str:
    """The line ``pacs serve`` prints once it listens (after the install and ``pacs init``)."""
    assert process.stdout is not None
    deadline = time.monotonic() + INSTALL_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if not ready:
            assert process.poll() is None, log.read_text()
            continue
        line = process.stdout.readline()
        assert line, log.read_text()
        if "DICOM TLS listening" in line:
            return line
    pytest.fail(f"the README's first command did not start the archive: {log.read_text()}")


@contextmanager
def _readme_archive(clone: Path, log: Path) -> Iterator[int]:
    """Run the README's first command in `clone` (on free ports); yield the web port."""
    web_port = _free_port()
    env = _environment(
        PACS_DICOM_PORT=str(_free_port()),
        PACS_WEB_PORT=str(web_port),
        PACS_DICOM_BIND="127.0.0.1",
        PACS_WEB_BIND="127.0.0.1",
        PACS_DICOM_WORKERS="1",
    )
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            ["bash", "-c", _readme_first_command()],
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            start_new_session=True,
        )
    try:
        _await_banner(process, log)
        yield web_port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=120)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.slow
def test_dev_setup_beside_the_readme_archive_leaves_its_pages_served(tmp_path: Path) -> None:
    clone = _copy_of_this_tree(tmp_path / "clone")
    with _readme_archive(clone, tmp_path / "archive.log") as web_port:
        ca = clone / "pacs-data" / "tls" / "ca.crt"
        assert {path: _status(web_port, ca, path) for path in PAGES} == dict.fromkeys(PAGES, 200)
        setup = subprocess.run(
            ["scripts/dev-setup.sh"],
            cwd=clone,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert (clone / ".venv" / "bin" / "pytest").is_file()
        assert {path: _status(web_port, ca, path) for path in PAGES} == dict.fromkeys(PAGES, 200)


@pytest.mark.slow
def test_dev_setup_refuses_to_reinstall_over_a_regular_install_in_its_virtualenv(tmp_path: Path) -> None:
    clone = _copy_of_this_tree(tmp_path / "clone")
    env = _environment()
    subprocess.run(["python3", "-m", "venv", ".venv"], cwd=clone, env=env, check=True, timeout=120)
    install = [".venv/bin/pip", "install", "-q", "--no-deps", "."]
    subprocess.run(install, cwd=clone, env=env, check=True, capture_output=True, timeout=INSTALL_TIMEOUT)
    (templates,) = (clone / ".venv" / "lib").glob("python3*/site-packages/webviewer/templates")
    before = sorted(path.name for path in templates.iterdir())
    setup = subprocess.run(
        ["scripts/dev-setup.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )
    assert setup.returncode == 1
    assert "holds a regular install of the archive" in setup.stderr, setup.stderr
    assert sorted(path.name for path in templates.iterdir()) == before
