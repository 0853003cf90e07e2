"""Pre-started workers: a host that serves many sessions keeps a few workers warm, so a new session is ready
in milliseconds instead of the interpreter start, the imports and the credential lookup (most of a second).

An idle worker has its rings, its interpreter, its backend's imports and its credentials ready, made from
the pool's template configuration, and waits for its session's own configuration (the first record on its
inbound ring). ``SonicBridge(config, pool=pool)`` takes one whose set-up fits the session (same interpreter,
environment, ring sizes, backend, region, endpoint, credentials profile, fake and vision options) and falls
back to a cold start otherwise. A keeper thread replaces idle workers that were taken or died; the pool
never blocks a host call. Closing the pool (or the host's exit) ends every idle worker by its pid.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sonic_bridge._version import __version__
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import handshake
from sonic_bridge.ipc.ring import Doorbell, SharedRing

if TYPE_CHECKING:
    from sonic_bridge.host.client import _Worker
    from sonic_bridge.vision.slot import FrameSlot

log = logging.getLogger("sonic_bridge.pool")
KEEP_SECONDS = 0.2  # how often the keeper looks at its idle workers
MAX_IDLE = 64
GIVE_UP_AFTER = 3  # idle workers that die in a row before the pool stops starting more
FRESH_HEARTBEAT = 2.0  # an idle worker whose heartbeat is older than this is not handed out


def fit_key(config: BridgeConfig) -> str:
    """Everything a pre-started worker's set-up depends on; sessions with the same key can share it."""
    raw = config.to_json()
    keys = ("backend", "region", "endpoint", "ca_file", "profile", "fake", "worker_python", "worker_env",
            "inbound_capacity", "outbound_capacity", "vision")
    return json.dumps([raw.get(k) for k in keys] + [config.python], sort_keys=True)


def _close_at_exit(ref: weakref.ReferenceType[WorkerPool]) -> None:
    pool = ref()
    if pool is not None:
        pool.close()


@dataclass
class PooledWorker:
    """An idle worker and the resources it was started with; the taking bridge owns all of them."""

    worker: _Worker
    inbound: SharedRing
    outbound: SharedRing
    in_bell: Doorbell
    out_bell: Doorbell
    slot: FrameSlot | None  # when the template enables vision

    def close(self) -> None:
        self.worker.kill()
        self.worker.release()
        for resource in (self.inbound, self.outbound, self.in_bell, self.out_bell, self.slot):
            if resource is not None:
                resource.close()


class WorkerPool:
    """Keeps ``size`` idle workers made from ``template``. Thread-safe; no call waits for a worker."""

    def __init__(self, template: BridgeConfig, size: int = 1) -> None:
        if not isinstance(template, BridgeConfig):
            raise TypeError(f"WorkerPool takes a BridgeConfig template, got {type(template).__name__}")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IDLE:
            raise ValueError(f"WorkerPool size must be a whole number from 1 to {MAX_IDLE}, got {size!r}")
        self.template = template
        self.size = size
        self._key = fit_key(template)
        self._json = template.dumps().encode()
        self._lock = threading.Lock()
        self._idle: list[PooledWorker] = []
        self._ready: set[int] = set()  # ids of idle workers that introduced themselves and finished set-up
        self._closed = False
        self._failures = 0
        self.taken = 0
        self.replaced = 0
        self._wake = threading.Event()
        self._fill()
        self._keeper = threading.Thread(target=self._keep, name="sonic-bridge-pool", daemon=True)
        self._keeper.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # ------------------------------------------------------------------ public
    def fits(self, config: BridgeConfig) -> bool:
        return fit_key(config) == self._key

    def take(self, config: BridgeConfig) -> PooledWorker | None:
        """An idle worker ready for this session, or None (none ready yet, or its set-up does not fit)."""
        if self._closed or not self.fits(config):
            return None
        with self._lock:
            for item in list(self._idle):
                if id(item) in self._ready and self._usable(item):
                    self._idle.remove(item)
                    self._ready.discard(id(item))
                    self.taken += 1
                    self._wake.set()  # the keeper starts its replacement now
                    return item
        return None

    @property
    def idle(self) -> int:
        """Idle workers ready to be taken."""
        with self._lock:
            return len(self._ready)

    @property
    def idle_pids(self) -> list[int]:
        """The pids of the idle workers (ready or still starting)."""
        with self._lock:
            return [item.worker.pid for item in self._idle]

    def close(self) -> None:
        """End every idle worker by its pid and release its resources. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            self._ready.clear()
        self._wake.set()
        for item in idle:
            item.close()
        if self._keeper is not threading.current_thread():
            self._keeper.join(timeout=2.0)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ keeper
    def _usable(self, item: PooledWorker) -> bool:
        alive = item.worker.exit_code() is None
        fresh = (time.monotonic_ns() - item.outbound.heartbeat_ns()) / 1e9 < FRESH_HEARTBEAT
        return bool(alive and fresh and item.outbound.status() == handshake.IDLE)

    def _keep(self) -> None:
        while not self._closed:
            self._wake.wait(KEEP_SECONDS)
            self._wake.clear()
            with contextlib.suppress(Exception):  # the keeper must outlive any surprise
                self._look()
                self._fill()

    def _look(self) -> None:
        dead: list[PooledWorker] = []
        with self._lock:
            for item in list(self._idle):
                if item.worker.exit_code() is not None:
                    self._idle.remove(item)
                    self._ready.discard(id(item))
                    dead.append(item)
                elif id(item) not in self._ready and self._introduced(item):
                    self._ready.add(id(item))
                    self._failures = 0
        for item in dead:
            tail = item.worker.stderr_tail()
            item.close()
            self._failures += 1
            self.replaced += 1
            if self._failures == GIVE_UP_AFTER:
                log.error("pre-started workers keep dying (%d in a row), the pool stops starting them; bridges "
                          "start cold and report why. Last output: %s", self._failures, tail[-300:] or "none")

    def _introduced(self, item: PooledWorker) -> bool:
        """Read the idle worker's introduction once it is there; True when it fits and has finished set-up."""
        worker = item.worker
        if worker.hello is None:
            record = item.outbound.read()
            if record is None:
                return False
            hello = handshake.parse_hello(record[0])
            problem = handshake.mismatch(hello, __version__, self.template.python)
            if problem is not None:
                log.error("pre-started worker refused: %s", problem)
                worker.kill()  # the keeper releases it on its next look
                return False
            worker.hello = hello
        return item.outbound.status() == handshake.IDLE

    def _fill(self) -> None:
        from sonic_bridge.host.client import start_pooled_worker

        while not self._closed and self._failures < GIVE_UP_AFTER:
            with self._lock:
                if len(self._idle) >= self.size or self._closed:
                    return
            try:
                item = start_pooled_worker(self.template, self._json)
            except (OSError, ValueError) as exc:
                log.error("could not pre-start a worker with %s: %s", self.template.python, exc)
                self._failures += 1
                return
            with self._lock:
                if self._closed:
                    item.close()
                    return
                self._idle.append(item)
