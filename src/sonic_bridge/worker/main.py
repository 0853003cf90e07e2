"""The worker process: ``python -m sonic_bridge.worker`` with the file descriptors the host made.

One asyncio loop runs the inbound ring reader, the session runner (protocol + backend stream) and the
outbound writer. The worker exits by itself as soon as its host is gone: the host holds the write
end of a pipe whose read end is here, and the kernel closes it however the host dies.

Start-up order: the introduction (version handshake) first, then the configuration, then the heartbeat,
then the slow part (the backend's imports in a thread, credentials), each step published in the
outbound ring's status word so the host applies its start-up timeout, not its stall detection, until
the worker serves. ``--probe`` prints what the worker sees of its environment, as JSON (doctor, worker-env).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import sys
from typing import cast

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge._version import __version__
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import codec, handshake
from sonic_bridge.ipc import messages as msg
from sonic_bridge.ipc.ring import Doorbell, SharedRing
from sonic_bridge.worker.outbox import Outbox, RingLogHandler

log = logging.getLogger("sonic_bridge.worker")
HEARTBEAT_SECONDS = 0.1
ACCOUNT_SECONDS = 1.0
AUTOGROUP_NICE = 10
# User audio waits at most this long in the ring (the host does not ring for it); what one tick reads goes to
# the service as one event: at 40 ms, two 20 ms host frames, half the wake-ups, events and writes of 20 ms
# (worker CPU -44 % measured), for at most 20 ms more delay before the service hears them.
AUDIO_TICK_SECONDS = 0.04
FD_NAMES = ("in-ring", "in-bell", "out-ring", "out-bell", "life", "config")
OPTIONAL_FD_NAMES = ("video-slot",)  # the latest camera frame, only when vision is enabled
SDK_MODULES = (
    "boto3",
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


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sonic_bridge.worker", description=__doc__)
    p.add_argument("--probe", action="store_true", help="print this worker environment's facts as JSON and exit")
    p.add_argument("--profile", default="", help="with --probe: the AWS profile whose credentials to look for")
    p.add_argument("--pooled", action="store_true", help="pre-started: --config is a template; the session's "
                   "own configuration arrives as the first inbound record")
    for name in FD_NAMES + OPTIONAL_FD_NAMES:
        p.add_argument(f"--{name}", type=int, help=f"inherited file descriptor: {name}")
    args = p.parse_args(argv)
    missing = [name for name in FD_NAMES if getattr(args, name.replace("-", "_")) is None]
    if not args.probe and missing:
        p.error(f"the host passes --{' --'.join(missing)}")
    return args


def _read_config(fd: int) -> BridgeConfig:
    with os.fdopen(fd, "rb") as f:
        f.seek(0)
        return BridgeConfig.from_json(json.loads(f.read()))


def needs_sdk(config: BridgeConfig) -> bool:
    return config.engine == "cascade" or config.backend == "aws" or (config.backend == "fake" and config.fake.via_sdk)


def _import_backend(config: BridgeConfig) -> None:
    """The slow imports, run in a thread so the heartbeat keeps going (~0.5 s idle, seconds under load)."""
    if needs_sdk(config):
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


_KNOWN_NOISE = ("AWS_ERROR_HTTP_STREAM_HAS_COMPLETED", "InvalidStateError")


def _quiet_known_sdk_noise(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """CRT finishes a body writer after the service ended the stream: harmless, and documented."""
    exc = context.get("exception")
    if exc is not None and any(n in f"{type(exc).__name__}: {exc}" for n in _KNOWN_NOISE):
        log.debug("ignored SDK shutdown noise: %s", exc)
        return
    loop.default_exception_handler(context)


def _lower_priority() -> None:
    # The host's 20 ms cycle matters more than ours: SCHED_BATCH stops our wake-ups from
    # preempting it on a shared core (docs/ipc-measurements.md, "wakeup preemption").
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    # SCHED_BATCH only orders threads within one autogroup, and the worker's own session (setsid) is an
    # autogroup of its own, competing with the host's as an equal. A lower weight keeps it behind the host;
    # not the lowest (19): against a host that keeps a core busy (avatar rendering) that leaves a worker
    # ~1.5 % of a core, too little to keep up with real-time audio. At 10 it still gets ~10 %.
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
        autogroup.write(str(AUTOGROUP_NICE))


async def _set_up(config: BridgeConfig, outbox: Outbox, status: SharedRing) -> object | None:
    """Import and build the backend and resolve its credentials; None (reported) when that fails."""
    from sonic_bridge.engines.base import make_backend
    from sonic_bridge.engines.failures import BackendError

    def refuse(code: str, message: str) -> None:
        outbox.send(ev.Error(code, message, recoverable=False))
        outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))

    status.set_status(handshake.IMPORTING)
    try:
        await asyncio.to_thread(_import_backend, config)
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


async def _session_config(inbound: SharedRing, in_bell: Doorbell, host_gone: asyncio.Event) -> BridgeConfig:
    """A pre-started worker waits (idle, beating) for the first inbound record: its session's configuration."""
    loop = asyncio.get_running_loop()
    rung = asyncio.Event()
    loop.add_reader(in_bell.fd, rung.set)
    try:
        while True:
            in_bell.drain()
            item = inbound.read()
            if item is not None:
                raw = handshake.parse_config(item[0])
                if raw is None:
                    raise ValueError("a pre-started worker's first command must be its configuration")
                return BridgeConfig.from_json(json.loads(raw))
            rung.clear()
            waiter = asyncio.ensure_future(rung.wait())
            gone = asyncio.ensure_future(host_gone.wait())
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            gone.cancel()
            if host_gone.is_set():
                os._exit(0)  # the pool's host is gone: nobody will ever take this worker
    finally:
        loop.remove_reader(in_bell.fd)


async def serve(config: BridgeConfig, inbound: SharedRing, in_bell: Doorbell, outbox: Outbox,
                status: SharedRing, life_fd: int, video_slot: int | None = None, *, pooled: bool = False) -> int:
    """Serve one session. ``pooled``: ``config`` is a template; set up for it, then wait for the session's own."""
    from sonic_bridge.engines.base import Engine, make_engine
    from sonic_bridge.engines.sonic.backends import Backend
    from sonic_bridge.vision.setup import make_look
    from sonic_bridge.vision.slot import FrameSlot

    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    host_gone = asyncio.Event()
    runner: Engine | None = None

    def on_bell() -> None:
        in_bell.drain()
        wake.set()

    async def heartbeat() -> None:
        ticks = 0
        while True:
            outbox.beat()
            ticks += 1
            if runner is not None and ticks % int(ACCOUNT_SECONDS / HEARTBEAT_SECONDS) == 0:
                runner.report_audio()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    loop.set_exception_handler(_quiet_known_sdk_noise)
    loop.add_reader(life_fd, host_gone.set)  # readable means EOF: the host's end was closed
    beating = asyncio.create_task(heartbeat(), name="heartbeat")
    setting_up = asyncio.create_task(_set_up(config, outbox, status))
    gone = asyncio.create_task(host_gone.wait())
    await asyncio.wait({setting_up, gone}, return_when=asyncio.FIRST_COMPLETED)
    if gone.done():
        os._exit(0)  # nobody to report to: leave now
    backend = setting_up.result()
    if backend is None:
        beating.cancel()
        return 2
    if pooled:
        status.set_status(handshake.IDLE)
        template = config
        try:
            config = await _session_config(inbound, in_bell, host_gone)
        except (ValueError, TypeError) as exc:
            outbox.send(ev.Error(errors.BAD_CONFIGURATION, f"pre-started worker: {exc}", recoverable=False))
            outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))
            return 2
        logging.getLogger("sonic_bridge").setLevel(config.log_level)
        if backend_key(config) != backend_key(template):  # the pool's template did not fit: set up again
            with contextlib.suppress(Exception):
                await cast(Backend, backend).aclose()
            backend = await _set_up(config, outbox, status)
            if backend is None:
                beating.cancel()
                return 2
    look = make_look(config, backend, FrameSlot.attach(video_slot) if video_slot is not None else None)
    runner = make_engine(config, cast(Backend, backend), outbox, look)
    if look is not None:
        # Sampling is kept apart from the session: nothing it does can end the conversation.
        camera = asyncio.create_task(look.camera.run(), name="camera")
        camera.add_done_callback(lambda t: None if t.cancelled() else log.error("camera stopped: %r", t.exception()))
    loop.add_reader(in_bell.fd, on_bell)

    async def read_commands() -> None:
        assert runner is not None
        while True:
            wake.clear()
            while (item := inbound.read()) is not None:
                try:
                    command = codec.decode(item[0])
                except codec.CodecError as exc:
                    log.error("dropped an unreadable host command: %s", exc)
                    continue
                if isinstance(command, msg.AudioIn | msg.TextIn | msg.ToolResultIn | msg.CloseIn | msg.SettingsIn):
                    runner.handle(command)
            runner.end_of_batch()
            await wake.wait()

    def tick() -> None:
        # Audio is not rung for (the host saves a syscall per frame): it is read on this tick, in batches;
        # commands (text, tool results, close) ring the doorbell and are read at once. A timer handle is
        # cheaper than a timeout around every wait.
        wake.set()
        loop.call_later(AUDIO_TICK_SECONDS, tick)

    tick()
    reading = asyncio.create_task(read_commands(), name="command reader")
    run = asyncio.create_task(runner.run(), name="session")
    outbox.beat()
    status.set_status(handshake.SERVING)
    done, _ = await asyncio.wait({run, gone, reading, beating}, return_when=asyncio.FIRST_COMPLETED)
    if gone.done():
        os._exit(0)  # nobody to report to: leave now, without waiting for any stream
    crashed = next((t for t in done if t is not gone and not t.cancelled() and t.exception() is not None), None)
    if crashed is not None:
        # A bug, not a service failure: report its cause, then exit non-zero so the host restarts the
        # worker with the conversation replayed (its restart policy decides).
        failure = crashed.exception()
        log.error("the worker's %s task failed", crashed.get_name(), exc_info=failure)
        outbox.send(ev.Error(errors.INTERNAL, f"the worker's {crashed.get_name()} task failed: "
                             f"{type(failure).__name__}: {failure}", recoverable=True))
        return 3
    gone.cancel()
    for task in (reading, beating):
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(runner.backend.aclose(), 2.0)
    runner.report_audio()
    outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))
    return 0


def probe(profile: str) -> dict[str, object]:
    """What this interpreter offers a worker: versions, where its packages come from, SDK, credentials."""
    out: dict[str, object] = {
        "python": list(sys.version_info[:3]), "executable": sys.executable, "sonic_bridge": __version__,
        "ring_protocol": handshake.RING_PROTOCOL, "sys_path": list(sys.path),
    }
    modules: dict[str, str] = {}
    for name in ("sonic_bridge", "numpy"):
        with contextlib.suppress(Exception):
            modules[name] = str(getattr(importlib.import_module(name), "__file__", ""))
    out["modules"] = modules
    try:
        import importlib.metadata as md

        for name in SDK_MODULES[:-1]:
            importlib.import_module(name)
        out["sdk"] = md.version("aws-sdk-bedrock-runtime")
        out["awscrt"] = md.version("awscrt")
        modules["aws_sdk_bedrock_runtime"] = str(importlib.import_module("aws_sdk_bedrock_runtime").__file__)
    except Exception as exc:
        out["sdk_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import boto3

        session = boto3.Session(profile_name=profile or None)
        creds = session.get_credentials()
        out["credentials"] = None if creds is None else getattr(creds, "method", "unknown")
        out["expires"] = str(getattr(creds, "_expiry_time", "") or "")
    except Exception as exc:
        out["credentials_error"] = f"{type(exc).__name__}: {exc}"
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.probe:
        sys.stdout.write(json.dumps(probe(args.profile)) + "\n")
        return 0
    inbound = SharedRing.attach(args.in_ring)
    outbound = SharedRing.attach(args.out_ring)
    out_bell = Doorbell(args.out_bell)
    hello = handshake.Hello(__version__, handshake.RING_PROTOCOL, ".".join(map(str, sys.version_info[:3])),
                            sys.executable, os.getpid())
    outbound.try_write(handshake.encode_hello(hello))  # always the first record: the host checks it first
    outbound.set_status(handshake.INTRODUCED)
    out_bell.ring()
    outbox = Outbox(outbound, out_bell)
    outbox.beat()
    handler = RingLogHandler(outbox)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    try:
        config = _read_config(args.config)
    except (OSError, ValueError, TypeError) as exc:
        outbox.send(
            ev.Error(errors.BAD_CONFIGURATION, f"worker could not read its configuration: {exc}", recoverable=False)
        )
        outbox.flush_before_exit()
        os._exit(2)
    logging.getLogger("sonic_bridge").setLevel(config.log_level)
    _lower_priority()
    code = 1
    try:
        code = asyncio.run(serve(config, inbound, Doorbell(args.in_bell), outbox, outbound, args.life,
                                 args.video_slot, pooled=args.pooled))
    except Exception as exc:
        log.exception("worker failed")
        outbox.send(ev.Error(errors.INTERNAL, f"worker failed: {type(exc).__name__}: {exc}", recoverable=True))
    # Leave at once: native SDK threads must not keep a process alive whose host is gone. What waits in the
    # outbox (a crash's Error, when the host was not polling) is handed over first, bounded.
    outbox.flush_before_exit()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
