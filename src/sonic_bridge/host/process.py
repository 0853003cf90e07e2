"""A launched worker interpreter, of one session (``client._Worker``) or shared (``group``): its life pipe, its
configuration memfd and its captured output; ended by its pid and its process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from typing import IO

from sonic_bridge.host import launch


class WorkerProcess:
    def __init__(self, python: str, worker_env: Mapping[str, str], config_json: bytes, fds: Mapping[str, int], *,
                 pooled: bool = False, group: bool = False) -> None:
        """Start ``python -m sonic_bridge.worker`` with ``fds`` and its own life pipe and ``config`` memfd.
        Raises OSError (or SubprocessError) with everything it opened closed again."""
        opened: list[int] = []
        self.stderr: IO[bytes] | None = None
        try:
            life_r, self.life_w = os.pipe()
            opened += [life_r, self.life_w]
            config_fd = os.memfd_create("sonic-bridge-config", os.MFD_CLOEXEC)
            opened.append(config_fd)
            os.write(config_fd, config_json)
            self.stderr = tempfile.TemporaryFile(prefix="sonic-bridge-worker-")
            passed = {**fds, "life": life_r, "config": config_fd}
            self.proc = subprocess.Popen(
                launch.worker_argv(python, passed, pooled=pooled, group=group),
                pass_fds=list(passed.values()),
                stdin=subprocess.DEVNULL,
                stdout=self.stderr,
                stderr=self.stderr,
                env=launch.worker_environment(python, worker_env),
                start_new_session=True,  # its own process group: kill() ends it and anything it started
            )
        except BaseException:
            for fd in opened:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if self.stderr is not None:
                self.stderr.close()
            raise
        # The worker holds its own copies now.
        for fd in (life_r, config_fd):
            os.close(fd)
        self.pid = self.proc.pid

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """End the worker by its pid, and its process group (a credential_process it started, say); reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()

    def stderr_tail(self, limit: int = 1500) -> str:
        """The end of what the worker printed, for the report of its death."""
        if self.stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - limit))
            return self.stderr.read().decode(errors="replace").strip()
        return ""

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.life_w)
        if self.stderr is not None:
            self.stderr.close()
