"""Start-up: start() -> READY and start() -> first reply audio, cold, from a pre-started worker (WorkerPool), and
joining a shared worker that already serves a session (WorkerGroup), through the real SDK (in-process door and
the TLS fake server)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from sonic_bridge import events as ev
from sonic_bridge.bench.bridge import SDK_DOORS, door_config, fake_credentials
from sonic_bridge.host.client import SonicBridge
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.host.group import WorkerGroup
from sonic_bridge.host.pool import WorkerPool
from sonic_bridge.settings import SessionSettings

SETTINGS = SessionSettings(turn_sensitivity="HIGH")
RATE = 16000
FRAME = 320


def _one(config: BridgeConfig, pool: WorkerPool | None, group: WorkerGroup | None = None, *, reply_too: bool = True
         ) -> tuple[float | None, float | None]:
    """Seconds from start() to READY, and (``reply_too``) to the first reply audio of a 0.5 s utterance spoken
    at READY."""
    speech = (0.4 * np.sin(2 * np.pi * 300 * np.arange(RATE // 2) / RATE)).astype(np.float32)
    audio = np.concatenate([speech, np.zeros(3 * RATE, np.float32)])
    start = time.monotonic()
    ready: float | None = None
    reply: float | None = None
    with SonicBridge(config, pool=pool, group=group) as bridge:
        n = 0
        while reply is None and time.monotonic() - start < 30 and (reply_too or ready is None):
            for event in bridge.poll():
                if isinstance(event, ev.StateChanged) and event.state is ev.BridgeState.READY and ready is None:
                    ready = time.monotonic() - start
                elif isinstance(event, ev.AudioOut) and reply is None:
                    reply = time.monotonic() - start
            if ready is not None:
                bridge.push_audio(audio[n : n + FRAME] if n < len(audio) else audio[-FRAME:], RATE)
                n += FRAME
            time.sleep(0.02 if ready is not None else 0.001)
    return ready, reply


def _stats(values: list[float | None]) -> dict[str, float]:
    array = np.asarray([v for v in values if v is not None]) * 1000
    if not len(array):
        return {"p50_ms": float("nan"), "max_ms": float("nan"), "n": 0.0}
    return {"p50_ms": float(np.percentile(array, 50)), "max_ms": float(np.max(array)), "n": float(len(array))}


def measure(runs: int, *, reply_too: bool = True) -> list[dict[str, Any]]:
    results = []
    with fake_credentials():
        for door in SDK_DOORS:
            with contextlib.ExitStack() as stack:
                config = door_config(door, stack)
                for mode in ("cold", "pre-started", "shared"):
                    pool = stack.enter_context(WorkerPool(config, size=1)) if mode == "pre-started" else None
                    group = None
                    if mode == "shared":  # a process that serves one session already; the next ones join it
                        group = stack.enter_context(WorkerGroup(config, sessions_per_worker=runs + 1))
                        stack.enter_context(SonicBridge(config, group=group))
                        _one(config, None, group, reply_too=False)  # its imports done, as a serving host has
                    ready: list[float | None] = []
                    reply: list[float | None] = []
                    for _ in range(runs):
                        while pool is not None and pool.idle < 1:
                            time.sleep(0.02)  # a host idles between visitors: the pool has refilled
                        r, f = _one(config, pool, group, reply_too=reply_too)
                        ready.append(r)
                        reply.append(f)
                    results.append({"door": door, "start": mode, "start_to_ready": _stats(ready),
                                    "start_to_first_reply": _stats(reply)})
    return results
