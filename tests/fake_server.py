"""Runs `sonic-bridge fake-server` as a subprocess for a test, and ends it by its pid."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import end_process


@dataclass
class Server:
    url: str
    ca: str
    pid: int


@contextlib.contextmanager
def fake_server(tmp: Path, *args: str, python: str = sys.executable) -> Iterator[Server]:
    proc = subprocess.Popen([python, "-m", "sonic_bridge.cli", "fake-server", "--port", "0",
                             "--cert-dir", str(tmp / "ca"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        listening = proc.stdout.readline().split()
        ca = proc.stdout.readline().split()
        problem = (listening, ca, proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        assert listening[:1] == ["LISTENING"] and ca[:1] == ["CA"], problem
        yield Server(listening[1], ca[1], proc.pid)
    finally:
        end_process(proc, first=signal.SIGINT)  # clean shutdown, as Ctrl-C; SIGKILL if it lingers
