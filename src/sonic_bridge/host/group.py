"""Shared workers: K worker processes for N sessions, so the worker's fixed cost is paid once per K sessions.

``SonicBridge(config, group=group)`` runs its session in one of the group's processes (``worker.group``)
instead of a process of its own. Each session keeps everything it has in a worker of its own: its rings,
its stream, credentials, renewal and accounting, its history; the host API is the same. What is shared is
the interpreter, the imports, the timers and the wake-ups: measured by ``sonic-bridge bench`` (scale suite,
"sharded"), a 2-core machine serves far more sessions this way.

What sharing changes: a crash (or a stall, and the kill that follows it) of a process costs all of its
sessions at once; each of their bridges restarts its session with its history, as it would with a worker
of its own, in the group's next process. ``stats()`` shows the shared process's memory and CPU. Memory and
CPU limits (``max_worker_memory_mb``, ``max_worker_cpu``) are refused: the process is not the session's.

The group starts its processes ahead of need (one spare, interpreter and imports done), so a session that
joins finds a warm process. ``close()`` (and the host's exit) ends every process by its pid.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass

from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.host.process import WorkerProcess
from sonic_bridge.ipc import control, handshake
from sonic_bridge.ipc.handshake import Hello
from sonic_bridge.ipc.ring import Doorbell, SharedRing

log = logging.getLogger("sonic_bridge.group")
MAX_SESSIONS_PER_WORKER = 64


class GroupClosed(RuntimeError):
    """The worker group was closed: its bridges cannot start or restart a session."""


def _close_at_exit(ref: weakref.ReferenceType[WorkerGroup]) -> None:
    group = ref()
    if group is not None:
        group.close()


class _SharedProcess(WorkerProcess):
    """One shared worker process: a worker process with a control socket to hand it sessions."""

    def __init__(self, python: str, template: BridgeConfig, template_json: bytes) -> None:
        self.python = python
        self.sessions: set[int] = set()
        host_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            super().__init__(python, template.worker_env, template_json, {"control": worker_end.fileno()},
                             group=True)
        except BaseException:
            host_end.close()
            raise
        finally:
            worker_end.close()  # the worker holds its own copy
        host_end.setblocking(False)  # a stuck worker must never block a host call: the send fails instead
        self.control = host_end
        self._send = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: control.Attach | control.Detach, fds: list[int]) -> None:
        """Raises OSError when the worker does not take it (gone, or its control queue is full)."""
        with self._send:
            socket.send_fds(self.control, [control.encode(message)], fds)

    def release(self) -> None:
        super().release()
        self.control.close()


@dataclass(eq=False)
class GroupSession:
    """A bridge's session in a shared process: what the bridge knows of "its worker" (see client._Worker).

    ``exit_code`` is the process's when it died, or the session's own when it ended inside the process;
    ``kill`` takes the session back (the process lives on for its other sessions)."""

    group: WorkerGroup
    process: _SharedProcess
    session: int
    outbound: SharedRing
    python: str
    started: float
    hello: Hello | None = None
    serving: bool = False
    _let_go: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        code = self.process.proc.poll()
        if code is not None:
            return code
        if self.outbound.closed:
            return None
        return handshake.ended_code(self.outbound.status())

    def kill(self) -> None:
        if self._let_go:
            return
        self._let_go = True
        if self.exit_code() is None:
            with contextlib.suppress(OSError):  # gone or stuck: its death or its stall kill ends the session
                self.process.send(control.Detach(self.session), [])

    def stderr_tail(self, limit: int = 1500) -> str:
        return self.process.stderr_tail(limit)

    def release(self) -> None:
        self.kill()
        self.group._forget(self.process, self.session)


class WorkerGroup:
    """Shared worker processes of ``sessions_per_worker`` sessions each. Thread-safe; no call waits for a worker
    (starting a process is a spawn, milliseconds); ``close`` ends them all."""

    def __init__(self, template: BridgeConfig | None = None, sessions_per_worker: int = 8) -> None:
        template = template if template is not None else BridgeConfig()
        if not isinstance(template, BridgeConfig):
            raise TypeError(f"WorkerGroup takes a BridgeConfig template, got {type(template).__name__}")
        if (isinstance(sessions_per_worker, bool) or not isinstance(sessions_per_worker, int)
                or not 1 <= sessions_per_worker <= MAX_SESSIONS_PER_WORKER):
            raise ValueError(f"sessions_per_worker must be a whole number from 1 to {MAX_SESSIONS_PER_WORKER}, "
                             f"got {sessions_per_worker!r}")
        self._refuse_limits(template, "the WorkerGroup template")
        self.template = template
        self.sessions_per_worker = sessions_per_worker
        self.python = template.python
        self._json = template.dumps().encode()
        self._lock = threading.Lock()
        self._processes: list[_SharedProcess] = []
        self._ids = 0
        self._closed = False
        self.started_processes = 0
        with self._lock:
            self._start_process()  # the first one warms up now: interpreter and imports before any session
        atexit.register(_close_at_exit, weakref.ref(self))

    # ------------------------------------------------------------------ public
    def check(self, config: BridgeConfig) -> None:
        """ValueError naming what keeps ``config``'s session out of this group's processes."""
        self._refuse_limits(config, "a session of a WorkerGroup")
        if config.python != self.python:
            raise ValueError(f"this session's worker interpreter ({config.python}) is not the WorkerGroup's "
                             f"({self.python}): set the same worker_python, or use a bridge without group=")
        if config.worker_env != self.template.worker_env:
            raise ValueError("this session's worker_env differs from the WorkerGroup template's: its processes "
                             "share one environment; use a group per environment")

    @property
    def pids(self) -> list[int]:
        """The pids of the group's live processes."""
        with self._lock:
            return [p.pid for p in self._processes if p.alive()]

    @property
    def sessions(self) -> int:
        with self._lock:
            return sum(len(p.sessions) for p in self._processes)

    def close(self) -> None:
        """End every process by its pid (their sessions' bridges report it and close). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            processes, self._processes = self._processes, []
        for process in processes:
            process.kill()
            process.release()

    def __enter__(self) -> WorkerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ for SonicBridge
    def attach(self, config_json: bytes, inbound: SharedRing, in_bell: Doorbell, outbound: SharedRing,
               out_bell: Doorbell, video_slot: int | None) -> GroupSession:
        """Hand a session to a process with room (starting one if none has). Raises GroupClosed or OSError."""
        config_fd = os.memfd_create("sonic-bridge-config", os.MFD_CLOEXEC)
        try:
            os.write(config_fd, config_json)
            names = ["in-ring", "in-bell", "out-ring", "out-bell", "config"]
            fds = [inbound.fd, in_bell.fd, outbound.fd, out_bell.fd, config_fd]
            if video_slot is not None:
                names.append("video-slot")
                fds.append(video_slot)
            for attempt in range(2):  # a process that died since it was chosen: once more, on a new one
                with self._lock:
                    if self._closed:
                        raise GroupClosed("the WorkerGroup was closed")
                    process = self._choose()
                    self._ids += 1
                    session = self._ids
                    process.sessions.add(session)
                    self._start_spare()
                try:
                    process.send(control.Attach(session, tuple(names)), fds)
                except OSError:
                    self._forget(process, session)
                    if attempt or process.alive():
                        raise
                    continue
                return GroupSession(self, process, session, outbound, process.python, time.monotonic())
            raise OSError("no shared worker took the session")  # not reached: the loop returns or raises
        finally:
            os.close(config_fd)  # the process holds its own copy now

    def _forget(self, process: _SharedProcess, session: int) -> None:
        """The session let go of its process; a dead process goes once all of its sessions have (each of
        their bridges reads its output for its report first)."""
        with self._lock:
            process.sessions.discard(session)
            if process.sessions or process.alive() or process not in self._processes:
                return
            self._processes.remove(process)
        process.kill()  # reaps it
        process.release()

    # ------------------------------------------------------------------ processes (caller holds _lock)
    @staticmethod
    def _refuse_limits(config: BridgeConfig, what: str) -> None:
        if config.max_worker_memory_mb is not None or config.max_worker_cpu is not None:
            raise ValueError(f"{what} sets max_worker_memory_mb or max_worker_cpu: a shared process is not one "
                             "session's, so its limits cannot be; use bridges without group= for per-session limits")

    def _reap(self) -> None:
        for process in [p for p in self._processes if not p.alive() and not p.sessions]:
            self._processes.remove(process)
            process.kill()
            process.release()

    def _choose(self) -> _SharedProcess:
        self._reap()
        for process in self._processes:
            if process.alive() and len(process.sessions) < self.sessions_per_worker:
                return process
        return self._start_process()

    def _start_spare(self) -> None:
        """A warm process with room for the next session, started before that session asks."""
        if not any(p.alive() and len(p.sessions) < self.sessions_per_worker for p in self._processes):
            with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
                self._start_process()

    def _start_process(self) -> _SharedProcess:
        process = _SharedProcess(self.python, self.template, self._json)
        self._processes.append(process)
        self.started_processes += 1
        log.debug("started shared worker pid %d", process.pid)
        return process


__all__ = ["GroupClosed", "GroupSession", "WorkerGroup"]
