"""A shared worker: ``python -m sonic_bridge.worker --group``, one process serving several sessions.

The host's ``WorkerGroup`` hands each session over on the control socket (``ipc.control``) with the session's
own rings, doorbells, configuration and frame slot; the session then runs exactly as in a worker of its
own (``worker.session``), on this process's one loop and shared clock. A session that ends (closed,
refused, or a task of ours failed) publishes ``handshake.ended(code)`` in its status word and is let go;
the process lives on for the others. The process's fixed cost (interpreter, imports, timers, wake-ups) is
paid once for all of them; a crash of the process costs all of its sessions, which their hosts restart
with their history, as with a worker of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from typing import NoReturn

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import control, handshake
from sonic_bridge.ipc.ring import Doorbell, SharedRing
from sonic_bridge.vision.slot import FrameSlot
from sonic_bridge.worker.clock import Clock
from sonic_bridge.worker.outbox import Outbox, RingLogHandler
from sonic_bridge.worker.session import HOST_GONE, SessionIO, import_backend, introduce, run_session

log = logging.getLogger("sonic_bridge.worker")
SETTLE_SECONDS = 2.0  # an ending session's last messages wait this long at most for its host to take them


class Group:
    def __init__(self, loop: asyncio.AbstractEventLoop, control_socket: socket.socket,
                 host_gone: asyncio.Event) -> None:
        self._loop = loop
        self._control = control_socket
        self._host_gone = host_gone
        self._never = asyncio.Event()  # a session never sees the host go: the whole process leaves at once
        self.clock = Clock(loop)
        self.sessions: dict[int, asyncio.Task[None]] = {}

    def on_control(self) -> None:
        """The control socket is readable: take every message waiting."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._control, control.MAX_MESSAGE, control.MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("the control socket failed: %s", exc)
                self._host_gone.set()
                return
            if not data and not fds:  # the host closed its end: it is gone
                self._host_gone.set()
                return
            try:
                message = control.parse(data, len(fds))
            except control.ControlError as exc:
                log.error("%s", exc)
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                continue
            if isinstance(message, control.Detach):
                task = self.sessions.get(message.session)
                if task is not None:
                    task.cancel()
            else:
                self._attach(message, fds)

    def _attach(self, message: control.Attach, fds: list[int]) -> None:
        named = dict(zip(message.names, fds, strict=True))
        try:
            inbound = SharedRing.attach(named["in-ring"])
            outbound = SharedRing.attach(named["out-ring"])
        except (OSError, ValueError) as exc:
            log.error("session %d: unusable rings: %s", message.session, exc)
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            return
        out_bell = Doorbell(named["out-bell"])
        introduce(outbound, out_bell)
        outbox = Outbox(outbound, out_bell, exit_flush=False)
        slot = None
        try:
            if "video-slot" in named:
                slot = FrameSlot.attach(named["video-slot"])
            with os.fdopen(named.pop("config"), "rb") as f:
                f.seek(0)
                config = BridgeConfig.from_json(json.loads(f.read()))
        except (OSError, ValueError, TypeError) as exc:
            outbox.send(ev.Error(errors.BAD_CONFIGURATION, f"worker could not read its configuration: {exc}",
                                 recoverable=False))
            config = None
        io = SessionIO(inbound, Doorbell(named["in-bell"]), outbound, out_bell, outbox, slot)
        task = self._loop.create_task(self._serve(message.session, io, config), name=f"session {message.session}")
        self.sessions[message.session] = task

    async def _serve(self, session: int, io: SessionIO, config: BridgeConfig | None) -> None:
        code = 2
        try:
            if config is not None:
                code = await run_session(io, config, self.clock, self._never)
        except asyncio.CancelledError:
            code = 0  # the host took it back: it no longer reads what we would say
        except Exception as exc:  # a bug: this session ends, the others go on
            log.exception("session %d failed", session)
            io.outbox.send(ev.Error(errors.INTERNAL, f"the worker's session failed: {type(exc).__name__}: {exc}",
                                    recoverable=True))
            code = 3
        finally:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await io.outbox.settle(SETTLE_SECONDS)
            io.outbound.set_status(handshake.ended(0 if code == HOST_GONE else code))
            io.out_bell.ring()
            io.close()
            self.sessions.pop(session, None)


async def _serve_group(template: BridgeConfig, control_fd: int, life_fd: int) -> int:
    from sonic_bridge.worker.main import process_setup

    loop = asyncio.get_running_loop()
    host_gone = process_setup(loop, life_fd)
    control_socket = socket.socket(fileno=control_fd)
    control_socket.setblocking(False)
    group = Group(loop, control_socket, host_gone)
    loop.add_reader(control_fd, group.on_control)

    def preload() -> None:
        # The template's imports now, while no session waits for them; a session that needs what failed
        # here reports it at its own set-up.
        with contextlib.suppress(Exception):
            import_backend(template)

    warming = asyncio.ensure_future(asyncio.to_thread(preload))
    await host_gone.wait()
    warming.cancel()
    return 0


def main(config_fd: int, control_fd: int, life_fd: int) -> NoReturn:
    from sonic_bridge.worker.main import lower_priority, read_config, route_logs

    route_logs(RingLogHandler(None))  # a session's records go to its host; the process's to stderr
    try:
        template = read_config(config_fd)
    except (OSError, ValueError, TypeError) as exc:
        sys.stderr.write(f"the shared worker could not read its template configuration: {exc}\n")
        sys.stderr.flush()
        os._exit(2)
    logging.getLogger("sonic_bridge").setLevel(template.log_level)
    lower_priority()
    code = 1
    try:
        code = asyncio.run(_serve_group(template, control_fd, life_fd))
    except Exception:
        log.exception("the shared worker failed")
    sys.stderr.flush()
    os._exit(code)  # at once: native SDK threads must not keep a process alive whose host is gone
