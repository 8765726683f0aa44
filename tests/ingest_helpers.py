"""Helpers for the at-rest ingest tests: real ``pacs serve`` processes, dcmtk pushes, mounts, disk scans.

Everything here talks to the archive from the outside only: the ``pacs`` command line in a
subprocess, dcmtk's ``storescu`` over mutual TLS, and the bytes that end up in files and on
block devices. Every helper is bounded in time and cleans up after itself, also on failure.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from tests.conftest import NodeFiles, _free_port

REPO = Path(__file__).resolve().parent.parent
PATIENT_NAME = "ZEPHYRINE^QUOKKA"
PATIENT_ID = "ZQ-4471-AT-REST"
FRAME_BYTES = 512 * 512 * 2  # one 512x512 frame of 16-bit pixels
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
MIB = 1 << 20


# -- objects ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentObject:
    """A DICOM file written for a push, and what identifies its content."""

    path: Path
    sop_uid: str
    study_uid: str
    size: int
    dataset_sha256: str  # of everything after the File Meta Information, as a C-STORE carries it


def new_pixel_pattern() -> bytes:
    """16 random bytes: pixel data made of them repeated cannot occur anywhere by chance."""
    return secrets.token_bytes(16)


def _meta_end(header: bytes) -> int:
    """Offset of the first dataset byte of a Part 10 file (after preamble, DICM and group 0002)."""
    assert header[128:132] == b"DICM", "not a DICOM Part 10 file"
    tag, vr, _, group_length = struct.unpack_from("<I2sHI", header, 132)
    assert tag == 0x00000002 and vr == b"UL", "File Meta Information must start with its group length"
    return 132 + 12 + int(group_length)


def write_object(
    path: Path,
    *,
    frames: int,
    pattern: bytes,
    patient_name: str = PATIENT_NAME,
    study_uid: str | None = None,
) -> SentObject:
    """Write a US multi-frame object (explicit VR little endian) whose pixel data repeat `pattern`.

    The pixel data are streamed to the file frame by frame, so even a 2 GB object is written
    without holding it in memory.
    """
    assert FRAME_BYTES % len(pattern) == 0
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = patient_name, PATIENT_ID, "US"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260115", "101500", "ACC-ZQ-1"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    header = path.read_bytes()
    digest = hashlib.sha256(header[_meta_end(header) :])
    frame = pattern * (FRAME_BYTES // len(pattern))
    with open(path, "ab") as out:
        element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, FRAME_BYTES * frames)
        out.write(element)
        digest.update(element)
        for _ in range(frames):
            out.write(frame)
            digest.update(frame)
    return SentObject(path, ds.SOPInstanceUID, ds.StudyInstanceUID, path.stat().st_size, digest.hexdigest())


def dataset_sha256(path: Path) -> str:
    """SHA-256 of a Part 10 file's dataset (everything after its File Meta Information)."""
    with open(path, "rb") as source:
        header = source.read(64 * 1024)
        digest = hashlib.sha256(header[_meta_end(header) :])
        while chunk := source.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def phi_needles(pattern: bytes, patient_name: str = PATIENT_NAME) -> dict[str, bytes]:
    """What must never be found at rest, by a readable label: the name's parts in ASCII and UTF-16
    (upper, lower and title case, so a normalised copy in an index is caught too) and the pixel pattern.
    """
    needles = {"pixel pattern": pattern}
    for word in re.split(r"[\^ =]+", patient_name):
        for variant in {word.upper(), word.lower(), word.title()}:
            needles[f"{variant!r} (ascii)"] = variant.encode("ascii")
            needles[f"{variant!r} (utf-16-le)"] = variant.encode("utf-16-le")
    return needles


def find_needles(path: Path, needles: Mapping[str, bytes], *, piece: int = 64 * MIB) -> dict[str, int]:
    """The first offset of each needle found in the file at `path`, read in pieces of `piece` bytes.

    Consecutive pieces overlap by the longest needle, so nothing is missed at a boundary.
    """
    overlap = max(map(len, needles.values())) - 1
    found: dict[str, int] = {}
    with open(path, "rb") as source:
        offset, tail = 0, b""
        while block := source.read(piece):
            window = tail + block
            base = offset - len(tail)
            for label, needle in needles.items():
                if label not in found and (at := window.find(needle)) >= 0:
                    found[label] = base + at
            offset += len(block)
            tail = window[-overlap:] if overlap else b""
    return found


def files_holding(root: Path, needles: Mapping[str, bytes]) -> dict[str, list[str]]:
    """Every regular file under `root` that contains one of the needles, with the labels it contains."""
    holding: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        found = find_needles(path, needles)
        if found:
            holding[str(path.relative_to(root))] = sorted(found)
    return holding


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
