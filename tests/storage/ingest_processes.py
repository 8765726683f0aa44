"""Processes of the at-rest ingest tests: the ``pacs`` command line, ``pacs serve``, dcmtk's ``storescu``.

Everything here talks to the archive from the outside only: the ``pacs`` command line in a
subprocess and dcmtk's ``storescu`` over mutual TLS. Every helper is bounded in time and cleans up
after itself, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.conftest import REPO, NodeFiles, _free_port

# -- the pacs command line and pacs serve -----------------------------------------------------------


def pacs_env(**settings: str) -> dict[str, str]:
    """This process's environment without any PACS_* variable, plus `settings` (PACS_... = value)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACS_")}
    env.update(settings)
    return env


def server_env(**settings: str) -> dict[str, str]:
    """An environment for ``pacs serve`` (and the other commands) on free ports of 127.0.0.1."""
    return pacs_env(
        PACS_DICOM_PORT=str(_free_port()),
        PACS_DICOM_BIND="127.0.0.1",
        PACS_WEB_PORT=str(_free_port()),
        PACS_WEB_BIND="127.0.0.1",
        **settings,
    )


def run_pacs(
    *args: str | Path, env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run one ``pacs`` command in a subprocess (``python -m pacs``) and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "pacs", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env),
        cwd=REPO,
    )


def init_archive(data: Path, node_dir: Path, env: Mapping[str, str], ae_title: str = "MODALITY") -> NodeFiles:
    """``pacs init`` an archive in `data`; enrol `ae_title` from 127.0.0.1 with an issued certificate."""
    init = run_pacs("init", "--data", data, env=env)
    assert init.returncode == 0, f"pacs init failed: {init.stderr}"
    add = run_pacs(
        "modality", "add", ae_title, "--host", "127.0.0.1", "--issue-cert", node_dir, "--data", data, env=env
    )
    assert add.returncode == 0, f"pacs modality add failed: {add.stderr}"
    return NodeFiles(ae_title, node_dir)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1], pgrp [2])."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _live_pids(select: int, position: int) -> list[int]:
    """Processes (not zombies) whose stat field at `position` equals `select`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[position]) == select:
                found.append(int(entry.name))
    return found


def process_tree(root: int) -> list[int]:
    """`root` and all its living descendants."""
    tree, frontier = [root], [root]
    while frontier:
        children = [child for parent in frontier for child in _live_pids(parent, 1)]
        tree += children
        frontier = children
    return sorted(tree)


def process_name(pid: int) -> str:
    """The process's name with its id, as ``ps`` shows it (``pacs-dicom-0[1234]``)."""
    try:
        return f"{Path(f'/proc/{pid}/comm').read_text().strip()}[{pid}]"
    except OSError:
        return f"[{pid}]"


def vm_rss(pid: int) -> int | None:
    """The resident set size of `pid` in bytes (VmRSS), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Served:
    """``pacs serve --data DATA`` in a session of its own, up once its banner says it is listening.

    Leaving the context kills the whole process group if it still runs, and waits until every
    process of it is gone (so that a file system under it can be unmounted).
    """

    def __init__(self, data: Path, env: Mapping[str, str], log: Path, *, start_timeout: float = 90) -> None:
        self.data = data
        self.env = dict(env)
        self.log = log
        self.port = int(self.env["PACS_DICOM_PORT"])
        self.output: list[str] = []
        self._banner = threading.Event()
        with open(log, "ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pacs", "serve", "--data", str(data)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + start_timeout
        while not self._banner.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"pacs serve did not come up: {self.output} {self.log_tail()}")

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            if "listening" in line.lower():
                self._banner.set()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's stderr, for failure messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n--- pacs serve stderr (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int:
        return self.process.pid

    def processes(self) -> list[int]:
        """The supervisor and every worker process under it."""
        return process_tree(self.pid)

    def _wait_group_gone(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while _live_pids(self.pid, 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # stragglers (a worker that ignored the stop)

    def terminate(self, timeout: float = 90) -> int:
        """Stop it with SIGTERM, as an admin or systemd would; return its exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"pacs serve did not stop within {timeout} s of SIGTERM{self.log_tail()}"
            ) from None
        self._wait_group_gone()
        self._reader.join(timeout=10)
        return status

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and workers at once), as a power cut would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._wait_group_gone()
        self._reader.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process.poll() is None or _live_pids(self.pid, 2):
            self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- dcmtk storescu ---------------------------------------------------------------------------------

_SENDING = re.compile(r"Sending file: (.+)$")
_STATUS = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")


@dataclass
class Push:
    """A running ``/usr/bin/storescu +tls ... -d -nh`` of `files` in one association.

    ``-nh`` keeps the association after a failed store; ``-d`` logs each response's status.
    """

    node: NodeFiles
    port: int
    files: Sequence[Path]
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        command = [
            "/usr/bin/storescu",
            *self.node.tls_args(),
            "-d",
            "-nh",
            "-aet",
            self.node.ae_title,
            "-aec",
            "PACS",
            "127.0.0.1",
            str(self.port),
            *map(str, self.files),
        ]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def lines(self, timeout: float) -> Iterator[str]:
        """Yield storescu's log lines as they come, until it ends; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    self.process.kill()
                    raise AssertionError(
                        f"storescu did not finish within {timeout} s: {self.tail()}"
                    ) from None
                continue
            if line is None:
                return
            self.log.append(line)
            yield line

    def wait(self, timeout: float) -> int:
        """Read the rest of the log and return storescu's exit status."""
        for _ in self.lines(timeout):
            pass
        return self.process.wait(timeout=30)

    def statuses(self) -> list[tuple[Path, int | None]]:
        """(file, DIMSE status of its C-STORE response or None) for every file storescu began to send."""
        answered: list[tuple[Path, int | None]] = []
        for line in self.log:
            if sending := _SENDING.search(line):
                answered.append((Path(sending.group(1).strip()), None))
            elif (status := _STATUS.search(line)) and answered and answered[-1][1] is None:
                answered[-1] = (answered[-1][0], int(status.group(1), 16))
        return answered

    def tail(self, lines: int = 25) -> str:
        """The end of storescu's log, for failure messages."""
        return "\n--- storescu log (tail) ---\n" + "\n".join(self.log[-lines:])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def push(node: NodeFiles, port: int, files: Sequence[Path], *, timeout: float = 300) -> Push:
    """Push `files` in one association and wait for storescu to end."""
    with Push(node, port, files) as running:
        running.wait(timeout)
    return running
