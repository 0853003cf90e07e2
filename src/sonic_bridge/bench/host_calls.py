"""Host call cost: warm and back to back (push_audio alone, the producer lock it takes, two threads at once),
and cold as a real host makes them (one push and one empty poll after each 20 ms sleep), on the compiled hot
path and on its pure-Python twin, side by side.

The lock is what makes the producer calls safe from any thread (the ring itself is single-producer);
this measures what it adds to the uncontended path, and what a second pushing thread costs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from sonic_bridge import events as ev
from sonic_bridge.host.client import SonicBridge
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import ring

FRAME = 320


def _pcts(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {"p50": float(np.percentile(array, 50)), "p99": float(np.percentile(array, 99)), "n": float(len(array))}


def _pushes(bridge: SonicBridge, count: int, out: list[float]) -> None:
    frame = np.zeros(FRAME, np.float32)
    for i in range(count):
        t0 = time.perf_counter_ns()
        bridge.push_audio(frame, 16000)
        out.append((time.perf_counter_ns() - t0) / 1000)
        if i % 25 == 0:
            time.sleep(0.0005)  # let the worker drain the ring: a full ring is a different path


def _ready_loopback() -> SonicBridge:
    """A started bridge on the loopback worker, READY (the caller closes it)."""
    bridge = SonicBridge(BridgeConfig(backend="loopback"))
    bridge.start()
    deadline = time.monotonic() + 60
    while bridge.state is not ev.BridgeState.READY:
        if time.monotonic() > deadline or bridge.closed:
            bridge.close()
            raise RuntimeError(f"the loopback bridge did not become ready ({bridge.close_reason})")
        bridge.poll()
        time.sleep(0.01)
    return bridge


def _cold(bridge: SonicBridge, cycles: int) -> dict[str, dict[str, float]]:
    """A host's cycle: sleep 20 ms, push one frame, poll (nothing to read): each call runs cold."""
    frame = np.zeros(FRAME, np.float32)
    push: list[float] = []
    poll: list[float] = []
    for _ in range(cycles):
        time.sleep(0.02)
        t0 = time.perf_counter_ns()
        bridge.push_audio(frame, 16000)
        t1 = time.perf_counter_ns()
        bridge.poll()
        t2 = time.perf_counter_ns()
        push.append((t1 - t0) / 1000)
        poll.append((t2 - t1) / 1000)
    return {"cold_push_us": _pcts(push), "cold_poll_us": _pcts(poll),
            "cold_cycle_us": _pcts([a + b for a, b in zip(push, poll, strict=True)])}


def paths(count: int, cycles: int) -> list[dict[str, Any]]:
    """Warm and cold host calls on the compiled path (when built) and on the Python path."""
    compiled = ring._hotpath
    rows = []
    for name, module in (("compiled", compiled), ("python", None)):
        if name == "compiled" and module is None:
            continue
        ring._hotpath = module
        try:
            with _ready_loopback() as bridge:
                warm: list[float] = []
                _pushes(bridge, count, warm)
                rows.append({"path": name, "warm_push_us": _pcts(warm), **_cold(bridge, cycles)})
        finally:
            ring._hotpath = compiled
    return rows


def measure(count: int) -> dict[str, Any]:
    lock = threading.Lock()
    lock_us: list[float] = []
    for _ in range(count):
        t0 = time.perf_counter_ns()
        with lock:
            pass
        lock_us.append((time.perf_counter_ns() - t0) / 1000)
    with _ready_loopback() as bridge:
        alone: list[float] = []
        _pushes(bridge, count, alone)
        shared: list[list[float]] = [[], []]
        threads = [threading.Thread(target=_pushes, args=(bridge, count // 2, shared[k])) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        bridge.poll()
    return {"uncontended_lock_us": _pcts(lock_us), "warm_push_us": _pcts(alone),
            "two_threads_push_us": _pcts(shared[0] + shared[1])}
