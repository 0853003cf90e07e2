"""Worker supervision on the host: the worker's memory (RSS) and CPU, read from /proc/<pid>, and its limits.

Cheap by design: two small /proc reads at most once a second (``SAMPLE_SECONDS``), never on every poll.
CPU is judged as an average over a window (the SDK's stream is known to spin: aws-sdk-python#11), and only
once the worker serves: its start-up imports are a burst, not a fault.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from dataclasses import dataclass

SAMPLE_SECONDS = 1.0
MiB = 1 << 20
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Usage:
    rss_bytes: int
    cpu_seconds: float  # user + system, since the process started


def read_usage(pid: int) -> Usage | None:
    """The process's resident memory and CPU time, or None when it is gone (or /proc is not there)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read()
        fields = stat[stat.rindex(b")") + 2 :].split()  # after the command name, which may hold spaces
        return Usage(int(statm.split()[1]) * _PAGE, (int(fields[11]) + int(fields[12])) / _TICKS)
    except (OSError, ValueError, IndexError):
        return None


class Supervisor:
    """One worker's usage, sampled at most once a second; ``check`` names a limit it went over."""

    def __init__(self, pid: int, *, memory_mb: int | None, cpu: float | None, cpu_window: float,
                 read: Callable[[int], Usage | None] = read_usage) -> None:
        self.pid = pid
        self._memory = memory_mb * MiB if memory_mb is not None else None
        self._cpu = cpu
        self._window = cpu_window
        self._read = read
        self._next = 0.0
        self._samples: collections.deque[tuple[float, float]] = collections.deque()  # (time, cpu seconds)
        self.rss_bytes = 0
        self.cpu_seconds = 0.0
        self.cpu_percent = 0.0  # of one core, between the last two samples

    def sample(self, now: float) -> bool:
        """Read /proc if the last read is a second old; True when it read."""
        if now < self._next:
            return False
        self._next = now + SAMPLE_SECONDS
        usage = self._read(self.pid)
        if usage is None:
            return False
        if self._samples:
            then, cpu = self._samples[-1]
            if now > then:
                self.cpu_percent = 100.0 * (usage.cpu_seconds - cpu) / (now - then)
        self.rss_bytes, self.cpu_seconds = usage.rss_bytes, usage.cpu_seconds
        self._samples.append((now, usage.cpu_seconds))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()
        return True

    def restart_cpu_window(self) -> None:
        """The worker serves from now on: start-up CPU is not held against it."""
        self._samples.clear()
        self._next = 0.0

    def check(self, now: float) -> str | None:
        """Sample (at most once a second) and say which limit the worker is over, if any."""
        if (self._memory is None and self._cpu is None) or not self.sample(now):
            return None
        if self._memory is not None and self.rss_bytes > self._memory:
            return (f"the worker (pid {self.pid}) uses {self.rss_bytes / MiB:.0f} MiB of memory, over its limit "
                    f"max_worker_memory_mb={self._memory // MiB}")
        if self._cpu is not None and len(self._samples) > 1:
            (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
            if t1 - t0 >= self._window * 0.9 and (c1 - c0) / (t1 - t0) > self._cpu:
                return (f"the worker (pid {self.pid}) used {(c1 - c0) / (t1 - t0):.2f} CPU cores on average over "
                        f"{t1 - t0:.0f} s, over its limit max_worker_cpu={self._cpu:g} (worker_cpu_window="
                        f"{self._window:g} s)")
        return None
