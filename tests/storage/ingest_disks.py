"""File systems and background activity of the at-rest ingest tests: ext4 on a loop device, tmpfs,
writeback, a disk filler, plaintext watches and resident-set sampling. Each cleans up after itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.storage.ingest_processes import process_tree, vm_rss

# -- file systems -----------------------------------------------------------------------------------


class LoopUnavailableError(Exception):
    """No loop device could be set up here (losetup failed)."""


def _run(command: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=True)


def _unmount(mountpoint: Path) -> None:
    """Unmount, retrying while something still lets go of it; lazily as the last resort (and fail)."""
    for _ in range(50):
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
    raise AssertionError(f"{mountpoint} stayed busy; unmounted lazily")


@contextmanager
def loop_ext4(image: Path, mountpoint: Path, size: int) -> Iterator[str]:
    """A sparse `image` of `size` bytes, attached to a loop device, made ext4 and mounted at `mountpoint`.

    Mounted without online discard, so blocks a file freed keep what was written to them, as
    on a real disk. Yields the loop device; on leaving, unmounts and detaches it (also on failure).
    """
    with open(image, "wb") as out:
        out.truncate(size)
    try:
        device = _run(["losetup", "--find", "--show", str(image)]).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LoopUnavailableError(getattr(exc, "stderr", "") or str(exc)) from exc
    mounted = False
    try:
        _run(["mkfs.ext4", "-q", "-F", device])
        mountpoint.mkdir(parents=True, exist_ok=True)
        _run(["mount", "-t", "ext4", "-o", "nodiscard", device, str(mountpoint)])
        mounted = True
        yield device
    finally:
        try:
            if mounted:
                _unmount(mountpoint)
        finally:
            subprocess.run(["losetup", "-d", device], capture_output=True, timeout=60)


@contextmanager
def tmpfs(mountpoint: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of `size_mib` MiB mounted at `mountpoint`, unmounted on leaving (also on failure)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(mountpoint)])
    try:
        yield mountpoint
    finally:
        _unmount(mountpoint)


def used_bytes(mountpoint: Path) -> int:
    """Bytes in use on the file system at `mountpoint` (delayed allocations included on ext4)."""
    stat = os.statvfs(mountpoint)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


# -- background activity ----------------------------------------------------------------------------


class Background:
    """A daemon thread running :meth:`step` every `interval` seconds until the context ends."""

    interval = 0.05

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.error: BaseException | None = None

    def step(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
                self._stop.wait(self.interval)
        except BaseException as exc:  # reported by __exit__
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if self.error is not None:
            raise AssertionError(f"{type(self).__name__} failed: {self.error!r}") from self.error

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Writeback(Background):
    """Forces the kernel to write dirty pages out (``sync``) every 50 ms, so nothing that was
    written, even briefly, can escape the disk by living only in the page cache."""

    def step(self) -> None:
        os.sync()


class PlaintextWatch(Background):
    """Looks into every file under `root` every 50 ms (its first 64 KiB) for PHI; remembers where."""

    def __init__(self, root: Path, needles: Mapping[str, bytes]) -> None:
        super().__init__()
        self.root = root
        self.needles = dict(needles)
        self.seen: dict[str, set[str]] = {}

    def step(self) -> None:
        for path in self.root.rglob("*"):
            with contextlib.suppress(OSError):
                if not path.is_file() or path.is_symlink():
                    continue
                with open(path, "rb") as source:
                    head = source.read(64 * 1024)
                hits = {label for label, needle in self.needles.items() if needle in head}
                if hits:
                    self.seen.setdefault(str(path.relative_to(self.root)), set()).update(hits)


class Filler(Background):
    """Fills the file system under `path` with a file of zeros, and keeps it full (taking any space
    that is freed again) until :meth:`release`, which deletes the file."""

    interval = 0.002

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.full = threading.Event()
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 (closed by release)
        self._zeros = bytes(64 * 1024)

    def step(self) -> None:
        for size in (len(self._zeros), 4096):
            while True:
                try:
                    self._file.write(self._zeros[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        self.full.set()

    def release(self) -> None:
        """Stop filling and give all the space back."""
        self.stop()
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class RssSampler(Background):
    """Samples VmRSS of the processes `pids` every 50 ms, keeping each one's peak; also notes any
    process that joins the tree under `root` (a restarted worker) while it runs."""

    def __init__(self, root: int, pids: Iterable[int]) -> None:
        super().__init__()
        self.root = root
        self.peak: dict[int, int] = dict.fromkeys(pids, 0)
        self.joined: set[int] = set()
        self.samples = 0

    def step(self) -> None:
        for pid in self.peak:
            rss = vm_rss(pid)
            if rss is not None:
                self.peak[pid] = max(self.peak[pid], rss)
        self.joined.update(set(process_tree(self.root)) - set(self.peak))
        self.samples += 1


def idle_rss(pids: Iterable[int], samples: int = 5, interval: float = 0.1) -> dict[int, int]:
    """Each process's VmRSS at rest: the highest of a few samples taken `interval` apart."""
    idle: dict[int, int] = {}
    for _ in range(samples):
        for pid in pids:
            rss = vm_rss(pid)
            assert rss is not None, f"process {pid} of pacs serve is gone"
            idle[pid] = max(idle.get(pid, 0), rss)
        time.sleep(interval)
    return idle


def remove_tree(path: Path) -> None:
    """Remove a directory tree if it exists (large test data should not outlive its test)."""
    shutil.rmtree(path, ignore_errors=True)
