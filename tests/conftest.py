"""Every test must leave no child process and no file descriptor behind (memfd rings, eventfds, pipes)."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator

import psutil
import pytest


def _fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _describe(fds: set[int]) -> list[str]:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(str(fd))
    return out


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    before = _fds()
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    yield
    gc.collect()  # native handles (CRT connections) close when their Python objects go
    deadline = time.monotonic() + 3.0
    while True:
        leaked_fds = (
            {
                fd
                for fd in _fds() - before
                if not _target(fd).startswith(("anon_inode:[eventpoll]", "/dev/urandom", "(closed)"))
            }
            if os.path.isdir("/proc/self/fd")
            else set()
        )
        leaked_fds = {fd for fd in leaked_fds if _still_open(fd)}
        children = {p.pid for p in me.children(recursive=True)} - children_before
        if (not leaked_fds and not children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not children, f"test left child processes running: {sorted(children)}"
    assert not leaked_fds, f"test left file descriptors open: {_describe(leaked_fds)}"


def _target(fd: int) -> str:
    """What the fd points at; one closed between the listing and this look (a thread's) is no leak."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        return "(closed)"


def _still_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
