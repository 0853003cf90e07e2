"""Runs `sonic-bridge fake-server` as a subprocess for a test, and ends it by its pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    url: str
    ca: str
    pid: int


@contextlib.contextmanager
def fake_server(tmp: Path, *args: str) -> Iterator[Server]:
    proc = subprocess.Popen([sys.executable, "-m", "sonic_bridge.cli", "fake-server", "--port", "0",
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
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # clean shutdown, as Ctrl-C
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
