"""One session inside a worker process: its rings, its backend set-up, its engine, its end.

A worker serves one session (``worker.main``) or several (``worker.group``); either way each session runs
``run_session`` on the process's one asyncio loop, with its own rings, backend, credentials, stream,
renewal and accounting, and the process's shared ``Clock``. What belongs to the process (the life pipe,
the exit, logging set-up, scheduling) is the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, cast

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge._version import __version__
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import codec, handshake
from sonic_bridge.ipc import messages as msg
from sonic_bridge.ipc.ring import Doorbell, SharedRing
from sonic_bridge.vision.slot import FrameSlot
from sonic_bridge.worker.clock import Clock
from sonic_bridge.worker.outbox import CURRENT_OUTBOX, Outbox

log = logging.getLogger("sonic_bridge.worker")
HOST_GONE = -1  # run_session's result when the host went away: nobody to report to
SDK_MODULES = (
    "awscrt",
    "smithy_http.aio.crt",
    "smithy_aws_core.identity",
    "aws_sdk_bedrock_runtime.client",
    "aws_sdk_bedrock_runtime.config",
    "aws_sdk_bedrock_runtime.models",
    "sonic_bridge.engines.sonic.backends.aws",
)
CASCADE_MODULES = (  # engine "cascade": Transcribe and Polly besides Bedrock
    "aws_sdk_transcribe_streaming.client",
    "aws_sdk_transcribe_streaming.models",
    "aws_sdk_polly.client",
    "aws_sdk_polly.models",
    "sonic_bridge.engines.cascade.pipeline",
)


@dataclass
class SessionIO:
    """What the host made for one session: its two rings, their doorbells, and the camera's frame slot."""

    inbound: SharedRing
    in_bell: Doorbell
    outbound: SharedRing  # also the status word and the heartbeat
    out_bell: Doorbell
    outbox: Outbox
    slot: FrameSlot | None = None  # the latest camera frame, when vision is enabled

    def close(self) -> None:
        """Unmap and close what this process holds of the session (the host keeps its own copies)."""
        for resource in (self.inbound, self.outbound, self.in_bell, self.out_bell, self.slot):
            if resource is not None:
                resource.close()


def introduce(outbound: SharedRing, out_bell: Doorbell) -> None:
    """The session's first record, always: the host checks the worker's version before anything else."""
    hello = handshake.Hello(__version__, handshake.RING_PROTOCOL, ".".join(map(str, sys.version_info[:3])),
                            sys.executable, os.getpid())
    outbound.try_write(handshake.encode_hello(hello))
    outbound.set_status(handshake.INTRODUCED)
    out_bell.ring()


def needs_sdk(config: BridgeConfig) -> bool:
    return config.engine == "cascade" or config.backend == "aws" or (config.backend == "fake" and config.fake.via_sdk)


def _hide_unused_aiohttp() -> None:
    # The SDK's config module imports its aiohttp client at module level (~130 ms of a worker's start), though
    # every stream here runs on the CRT transport (aiohttp cannot do duplex). smithy_http guards that import
    # (aiohttp is optional there), and None in sys.modules is the import system's own "not available".
    if "aiohttp" not in sys.modules:
        sys.modules["aiohttp"] = None  # type: ignore[assignment]


def import_backend(config: BridgeConfig) -> None:
    """The slow imports, run in a thread so the heartbeat keeps going (~0.5 s idle, seconds under load)."""
    if needs_sdk(config):
        _hide_unused_aiohttp()
        for name in SDK_MODULES + (CASCADE_MODULES if config.engine == "cascade" else ()):
            importlib.import_module(name)
    elif config.backend == "fake":
        importlib.import_module("sonic_bridge.fake.direct")


def _missing_sdk_message(exc: ImportError) -> str:
    from sonic_bridge.host.launch import default_worker_env_dir

    return (
        f"the worker's Python {sys.version.split()[0]} at {sys.executable} cannot import the AWS SDK ({exc}): "
        "backend 'aws' and the fake's via_sdk need Python >= 3.12 with sonic-bridge[aws]. Run "
        f"`sonic-bridge worker-env` (it makes one at {default_worker_env_dir()}, which bridges use when "
        "worker_python is not set) or set worker_python to such an interpreter"
    )


async def set_up(config: BridgeConfig, outbox: Outbox, status: SharedRing) -> object | None:
    """Import and build the backend and resolve its credentials; None (reported) when that fails."""
    from sonic_bridge.engines.base import make_backend
    from sonic_bridge.engines.failures import BackendError

    def refuse(code: str, message: str) -> None:
        outbox.send(ev.Error(code, message, recoverable=False))
        outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))

    status.set_status(handshake.IMPORTING)
    try:
        await asyncio.to_thread(import_backend, config)
        backend = make_backend(config)
        status.set_status(handshake.CONNECTING_CREDENTIALS)
        prepare = getattr(backend, "prepare", None)
        if prepare is not None:
            await prepare()
    except ImportError as exc:
        log.debug("import failed", exc_info=True)
        refuse(errors.WORKER_ENVIRONMENT, _missing_sdk_message(exc) if needs_sdk(config) else
               f"the worker at {sys.executable} cannot import what backend {config.backend!r} needs: {exc}")
        return None
    except BackendError as exc:
        refuse(exc.code, exc.message)
        return None
    except Exception as exc:
        log.exception("could not set up the %s backend", config.backend)
        refuse(errors.BAD_CONFIGURATION, f"backend {config.backend!r}: {type(exc).__name__}: {exc}")
        return None
    return backend


def backend_key(config: BridgeConfig) -> str:
    """What a built backend depends on: a pre-started worker's backend serves any session with the same key."""
    raw = config.to_json()
    return json.dumps([raw[k] for k in ("backend", "region", "endpoint", "ca_file", "profile", "fake", "engine",
                                        "cascade")])


async def _first_wake(wake: asyncio.Event, host_gone: asyncio.Event) -> bool:
    """Wait for the doorbell (or a tick); False when the host went away meanwhile."""
    waiter = asyncio.ensure_future(wake.wait())
    gone = asyncio.ensure_future(host_gone.wait())
    try:
        await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        gone.cancel()
    return not host_gone.is_set()


async def _session_config(io: SessionIO, wake: asyncio.Event, host_gone: asyncio.Event) -> BridgeConfig | None:
    """A pre-started worker waits (idle, beating) for the first inbound record: its session's configuration.
    None when the host went away first."""
    while True:
        io.in_bell.drain()
        item = io.inbound.read()
        if item is not None:
            raw = handshake.parse_config(item[0])
            if raw is None:
                raise ValueError("a pre-started worker's first command must be its configuration")
            return BridgeConfig.from_json(json.loads(raw))
        wake.clear()
        if not await _first_wake(wake, host_gone):
            return None


async def run_session(io: SessionIO, config: BridgeConfig, clock: Clock, host_gone: asyncio.Event, *,
                      pooled: bool = False) -> int:
    """Serve one session until it closes: 0 closed, 2 refused at set-up, 3 a task of ours failed (the host
    restarts the session with its history), HOST_GONE. ``pooled``: ``config`` is a template; set up for it,
    then wait for the session's own configuration as the first inbound record."""
    from sonic_bridge.engines.base import Engine, make_engine
    from sonic_bridge.engines.sonic.backends import Backend
    from sonic_bridge.vision.setup import make_look

    loop = asyncio.get_running_loop()
    outbox = io.outbox
    CURRENT_OUTBOX.set(outbox)  # this session's log records go to its own host bridge
    member = clock.join(outbox.beat)
    wake = member.wake

    def on_bell() -> None:
        io.in_bell.drain()
        wake.set()

    loop.add_reader(io.in_bell.fd, on_bell)
    tasks: list[asyncio.Future[Any]] = []
    runner: Engine | None = None
    backend: object | None = None
    try:
        setting_up = asyncio.create_task(set_up(config, outbox, io.outbound))
        gone = asyncio.create_task(host_gone.wait())
        tasks += [setting_up, gone]
        await asyncio.wait({setting_up, gone}, return_when=asyncio.FIRST_COMPLETED)
        if gone.done():
            return HOST_GONE
        backend = setting_up.result()
        if backend is None:
            return 2
        if pooled:
            io.outbound.set_status(handshake.IDLE)
            template = config
            try:
                session = await _session_config(io, wake, host_gone)
            except (ValueError, TypeError) as exc:
                outbox.send(ev.Error(errors.BAD_CONFIGURATION, f"pre-started worker: {exc}", recoverable=False))
                outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))
                return 2
            if session is None:
                return HOST_GONE
            config = session
            logging.getLogger("sonic_bridge").setLevel(config.log_level)
            if backend_key(config) != backend_key(template):  # the pool's template did not fit: set up again
                with contextlib.suppress(Exception):
                    await cast(Backend, backend).aclose()
                backend = await set_up(config, outbox, io.outbound)
                if backend is None:
                    return 2
        look = make_look(config, backend, io.slot)
        runner = make_engine(config, cast(Backend, backend), outbox, look)
        member.account = runner.report_audio
        if look is not None:
            # Sampling is kept apart from the session: nothing it does can end the conversation.
            camera = asyncio.create_task(look.camera.run(), name="camera")
            camera.add_done_callback(lambda t: None if t.cancelled() else log.error("camera stopped: %r",
                                                                                     t.exception()))
            tasks.append(camera)
        engine = runner

        async def read_commands() -> None:
            # Audio is not rung for (the host saves a syscall per frame): the clock's tick reads it in batches;
            # commands (text, tool results, close) ring the doorbell and are read at once.
            while True:
                wake.clear()
                while (item := io.inbound.read()) is not None:
                    try:
                        command = codec.decode(item[0])
                    except codec.CodecError as exc:
                        log.error("dropped an unreadable host command: %s", exc)
                        continue
                    if isinstance(command, msg.AudioIn | msg.TextIn | msg.ToolResultIn | msg.CloseIn | msg.SettingsIn):
                        engine.handle(command)
                engine.end_of_batch()
                await wake.wait()

        reading = asyncio.create_task(read_commands(), name="command reader")
        run = asyncio.create_task(runner.run(), name="session")
        tasks += [reading, run]
        outbox.beat()
        member.ticking = True
        io.outbound.set_status(handshake.SERVING)
        watched: set[asyncio.Future[Any]] = {run, gone, reading, member.failed}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if gone.done():
            return HOST_GONE  # nobody to report to: leave now, without waiting for any stream
        crashed = next((t for t in done if t is not gone and not t.cancelled() and t.exception() is not None), None)
        if crashed is not None:
            # A bug, not a service failure: report its cause, then end non-zero so the host restarts the
            # session with the conversation replayed (its restart policy decides).
            failure = crashed.exception()
            name = crashed.get_name() if isinstance(crashed, asyncio.Task) else "heartbeat"
            log.error("the worker's %s task failed", name, exc_info=failure)
            outbox.send(ev.Error(errors.INTERNAL, f"the worker's {name} task failed: "
                                 f"{type(failure).__name__}: {failure}", recoverable=True))
            return 3
        for task in tasks:
            if task is not run:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.backend.aclose(), 2.0)
        runner.report_audio()
        outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))
        return 0
    except asyncio.CancelledError:
        # A shared worker's host took the session back: its stream must not outlive it in this process.
        for task in tasks:
            task.cancel()
        if backend is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cast(Backend, backend).aclose(), 2.0)
        raise
    finally:
        clock.leave(member)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(io.in_bell.fd)
        for task in tasks:
            task.cancel()
