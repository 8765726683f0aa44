"""``pacs serve``: the DICOM listener and the HTTPS web viewer, in the foreground.

With ``[dicom] workers`` at 1 both run in this process. Above 1 (0 means one per CPU
core), this process forks that many DICOM workers and one web worker before it starts
any thread, and then only supervises: each worker opens its own index connections;
DICOM workers accept on one TLS socket the supervisor bound before forking (the first
free worker takes the next association; the plaintext port, opened on demand, is shared
with SO_REUSEPORT), and share ``max_associations`` through lock files
(:mod:`pacs.dicom.slots`). Before any worker starts, objects a crash left out of the
index are indexed from their blobs; a periodic sweep does so while the service runs.
The supervisor audits start and stop (no start without its record; a stop goes on without it,
logged), passes SIGTERM and SIGINT on, waits for the work in flight, and restarts a worker that
died. Workers are killed by the kernel if the supervisor dies,
so the service lives and dies as one process tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pacs.core import tls
from pacs.core.audit import AuditEvent
from pacs.core.checkpoints import checkpoint_loop, checkpoint_now
from pacs.core.config import Settings
from pacs.core.context import INCOMING, Context, open_pacs
from pacs.core.events import application_started, application_stopped
from pacs.dicom.forwarder import Forwarder
from pacs.dicom.server import DicomServer, listening_socket
from pacs.ops.alert_watch import AlertWatch
from pacs.ops.alerts import AlertQueue, alert_sender
from pacs.ops.forward_queue import ForwardQueue
from pacs.ops.forwarding import check_routes
from pacs.ops.reindex import PeriodicSweep, reindex_alone_if_possible
from pacs.ops.trash_keeper import TrashKeeper
from pacs.serve.https import WebServer
from storage.errors import PacsError

START_TIMEOUT = 60.0
STOP_GRACE = 30.0
RESTARTS_PER_MINUTE = 5
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_READY = b"r"


class ServiceError(PacsError):
    """The service cannot start or keep running; the message says why."""


def worker_count(settings: Settings) -> int:
    """How many DICOM processes to run: ``[dicom] workers``, or one per CPU core for 0."""
    return settings.dicom.workers or os.cpu_count() or 1


def _audit_stop(settings: Settings, user: str) -> None:
    """Record the stop through a briefly opened archive (the supervisor keeps none open across forks)."""
    pacs = open_pacs(settings)
    try:
        pacs.audit.append_after(application_stopped(by=user))
        checkpoint_now(pacs, tls.client_context)
    finally:
        pacs.close()


def _stop_on_signals(stop: threading.Event) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


@dataclass(frozen=True)
class Role:
    """What one process serves: DICOM (as worker N of several, or alone), the web, or both."""

    name: str
    dicom: bool
    web: bool
    dicom_worker: int | None = None


ALONE = Role("pacs", dicom=True, web=True)


def _banner(settings: Settings, workers: int) -> str:
    """The start-up line: the ports in use and the address doctors open (the certificate's name)."""
    dicom, web = settings.dicom, settings.web
    processes = "1 process" if workers == 1 else f"{workers} DICOM worker processes"
    plaintext = f", plaintext port {dicom.plaintext_port} for legacy nodes" if dicom.plaintext_port else ""
    return (
        f"DICOM TLS listening on {dicom.bind}:{dicom.port} as {dicom.ae_title} ({processes}){plaintext}; "
        f"web viewer on https://{settings.server.hostname}:{web.port}/ (listening on {web.bind}:{web.port})"
    )


class _Task(Protocol):
    """A background thread of a DICOM process: started after its servers, stopped before them."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


def _background(pacs: Context, role: Role) -> list[_Task]:
    """The sweep of unindexed objects; in the first (or only) DICOM process the trash, forwarding, alerts."""
    settings = pacs.settings
    full = role.dicom_worker in (None, 0)
    tasks: list[_Task] = [
        PeriodicSweep(pacs.archive, pacs.audit, interval=settings.storage.sweep_seconds, full=full)
    ]
    if full:
        tasks += [TrashKeeper(pacs.archive, pacs.audit, settings.storage)]
        tasks += [Forwarder(pacs, ForwardQueue(pacs.database))]
        tasks += [AlertWatch(pacs, AlertQueue(pacs.database), window_minutes=settings.alerts.window_minutes)]
        tasks += [alert_sender(pacs)]
    return tasks


def _serve(
    settings: Settings,
    stop: threading.Event,
    role: Role,
    on_ready: Callable[[], None],
    *,
    start_event: AuditEvent | None = None,
    stop_event: AuditEvent | None = None,
    tls_socket: socket.socket | None = None,
) -> None:
    """Run `role`'s servers in this process until `stop` is set; then let them finish.

    Alone, the process also records the application's start and stop through its archive.
    A DICOM worker accepts on the supervisor's `tls_socket`.
    """
    pacs = open_pacs(settings)
    dicom = DicomServer(pacs, worker=role.dicom_worker, tls_socket=tls_socket) if role.dicom else None
    web = WebServer(pacs) if role.web else None
    tasks = _background(pacs, role) if dicom is not None else []
    checkpoints = (
        checkpoint_loop(pacs, tls.client_context) if role.dicom and role.dicom_worker in (None, 0) else None
    )
    try:
        if start_event is not None:
            check_routes(pacs.database, settings.routes)
            pacs.audit.append(start_event)
            reindex_alone_if_possible(pacs.archive, pacs.audit, why="start-up")
        if dicom is not None:
            dicom.start()
        if web is not None:
            web.start()
        for task in tasks:
            task.start()
        if checkpoints is not None:
            checkpoints.start()
        on_ready()
        gc.freeze()
        stop.wait()
    finally:
        for task in reversed(tasks):
            task.stop()
        if web is not None:
            web.stop()
        if dicom is not None:
            dicom.stop(grace_seconds=STOP_GRACE)
        if stop_event is not None:
            pacs.audit.append_after(stop_event)
        if checkpoints is not None:
            checkpoints.stop()
        pacs.close()


def run(settings: Settings, *, user: str, announce: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT; raise :class:`ServiceError` if the service cannot start."""
    workers = worker_count(settings)
    stop = threading.Event()
    _stop_on_signals(stop)
    if workers == 1:
        details = {"dicom_port": settings.dicom.port, "web_port": settings.web.port, "workers": 1}
        _serve(
            settings,
            stop,
            ALONE,
            lambda: announce(_banner(settings, 1)),
            start_event=application_started(by=user, details=details),
            stop_event=application_stopped(by=user),
        )
        return
    _Supervisor(settings, workers, stop).run(user=user, announce=announce)


def _become_worker(parent: int, role: Role) -> None:
    """Name this process after its role (``ps``, ``top``) and have it SIGKILLed when `parent` dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NAME, f"pacs-{role.name}".encode()[:15], 0, 0, 0)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class _Supervisor:
    """Forks, watches and stops the worker processes."""

    def __init__(self, settings: Settings, workers: int, stop: threading.Event) -> None:
        self.settings = settings
        self.workers = workers
        self.roles = [Role(f"dicom-{n}", dicom=True, web=False, dicom_worker=n) for n in range(workers)]
        self.roles.append(Role("web", dicom=False, web=True))
        self.stop = stop
        self.children: dict[int, Role] = {}
        self.restarts: list[float] = []
        self._ready_reader, self._ready_writer = os.pipe()
        self.tls_socket: socket.socket | None = None

    def run(self, *, user: str, announce: Callable[[str], None]) -> None:
        self._check_port_free()
        self.tls_socket = listening_socket(self.settings.dicom.bind, self.settings.dicom.port)
        self._clear_spool()
        details = {
            "dicom_port": self.settings.dicom.port,
            "web_port": self.settings.web.port,
            "workers": self.workers,
        }
        self._start_up(application_started(by=user, details=details))
        try:
            for role in self.roles:
                self._fork(role)
            self._await_ready()
            announce(_banner(self.settings, self.workers))
            self._supervise()
            announce("stopping: letting associations in flight finish")
        finally:
            self._stop_children()
            if self.tls_socket is not None:
                self.tls_socket.close()
            os.close(self._ready_reader)
            os.close(self._ready_writer)
            _audit_stop(self.settings, user)

    def _start_up(self, event: AuditEvent) -> None:
        """Audit the start and index what a crash left unindexed, before any worker writes."""
        pacs = open_pacs(self.settings)
        try:
            check_routes(pacs.database, self.settings.routes)
            pacs.audit.append(event)
            reindex_alone_if_possible(pacs.archive, pacs.audit, why="start-up")
        finally:
            pacs.close()

    def _check_port_free(self) -> None:
        dicom, web = self.settings.dicom, self.settings.web
        for what, bind, port in (("DICOM", dicom.bind, dicom.port), ("web", web.bind, web.port)):
            family = socket.AF_INET6 if ":" in bind else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((bind, port))
                except OSError as exc:
                    raise ServiceError(
                        f"{what} port {port} on {bind} is in use ({exc.strerror}); "
                        "is another pacs serve running?"
                    ) from None

    def _clear_spool(self) -> None:
        """Remove the plaintext spool that versions before streamed receiving kept."""
        incoming = self.settings.data_dir / INCOMING
        if incoming.is_dir():
            shutil.rmtree(incoming)

    def _fork(self, role: Role) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = role
            return
        status = 1
        try:
            _become_worker(parent, role)
            os.close(self._ready_reader)
            stop = threading.Event()
            _stop_on_signals(stop)
            _serve(
                self.settings,
                stop,
                role,
                lambda: os.write(self._ready_writer, _READY),
                tls_socket=self.tls_socket if role.dicom else None,
            )
            status = 0
        except BaseException:
            traceback.print_exc(file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(status)

    def _await_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        ready = 0
        while ready < len(self.roles):
            if self.stop.is_set():
                raise ServiceError("stopped while the workers were starting")
            if self._reap():
                raise ServiceError("a worker exited while starting; see the messages above")
            if time.monotonic() > deadline:
                raise ServiceError(f"the workers did not start within {START_TIMEOUT:.0f} s")
            readable, _, _ = select.select([self._ready_reader], [], [], 0.2)
            if readable:
                ready += len(os.read(self._ready_reader, len(self.roles)))

    def _reap(self) -> list[Role]:
        """Collect the workers that have exited; return their roles."""
        ended = []
        while self.children:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            role = self.children.pop(pid, None)
            if role is not None:
                ended.append(role)
        return ended

    def _supervise(self) -> None:
        while not self.stop.wait(0.5):
            for role in self._reap():
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < 60] + [now]
                if len(self.restarts) > RESTARTS_PER_MINUTE:
                    raise ServiceError("workers keep dying; stopping the service")
                print(f"pacs: worker {role.name} exited; starting it again", file=sys.stderr, flush=True)
                self._fork(role)

    def _stop_children(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE + 10
        while self.children and time.monotonic() < deadline:
            if not self._reap():
                time.sleep(0.1)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.children.pop(pid)
