from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sonic_bridge import SonicBridge
from sonic_bridge import events as ev


def run_until(
    bridge: SonicBridge,
    done: Callable[[list[ev.Event]], bool],
    timeout: float = 10.0,
    each_cycle: Callable[[int], None] | None = None,
) -> list[ev.Event]:
    """Drive the bridge like a 20 ms host until ``done(events)``; fails on timeout."""
    events: list[ev.Event] = []
    deadline = time.monotonic() + timeout
    cycle = 0
    while time.monotonic() < deadline:
        if each_cycle:
            each_cycle(cycle)
        events += bridge.poll()
        if done(events):
            return events
        cycle += 1
        time.sleep(0.02)
    raise AssertionError(f"timed out; got {[type(e).__name__ for e in events][-30:]}")


def has_state(state: ev.BridgeState) -> Callable[[list[ev.Event]], bool]:
    return lambda events: any(isinstance(e, ev.StateChanged) and e.state is state for e in events)


def tone(seconds: float, rate: int = 16000, freq: float = 220.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def end_process(proc: subprocess.Popen[Any], first: int = signal.SIGKILL, wait: float = 5.0) -> None:
    """End a test's subprocess by its pid (``first`` signal, then SIGKILL) and close its pipes."""
    if proc.poll() is None:
        os.kill(proc.pid, first)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()


@contextlib.contextmanager
def busy_cores(count: int = 1) -> Iterator[list[int]]:
    """Keep ``count`` cores busy with CPU hogs (as avatar rendering does), ended by their pids."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield [h.pid for h in hogs]
    finally:
        for hog in hogs:
            end_process(hog)


def process_alive(pid: int) -> bool:
    """Alive and not a zombie (an orphaned worker stays a zombie until init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
