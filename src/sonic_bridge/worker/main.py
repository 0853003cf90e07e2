"""The worker process: ``python -m sonic_bridge.worker`` with the file descriptors the host made.

One asyncio loop runs the inbound ring reader, the session runner (protocol + backend stream) and the
outbound writer (``worker.session``); with ``--group`` one process serves several sessions, each with its
own rings, handed over on a control socket (``worker.group``). The worker exits by itself as soon as its
host is gone: the host holds the write end of a pipe whose read end is here, and the kernel closes it
however the host dies.

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

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge._version import __version__
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import handshake
from sonic_bridge.ipc.ring import Doorbell, SharedRing
from sonic_bridge.vision.slot import FrameSlot
from sonic_bridge.worker.clock import Clock
from sonic_bridge.worker.outbox import Outbox, RingLogHandler
from sonic_bridge.worker.session import HOST_GONE, SDK_MODULES, SessionIO, introduce, run_session

log = logging.getLogger("sonic_bridge.worker")
AUTOGROUP_NICE = 10
FD_NAMES = ("in-ring", "in-bell", "out-ring", "out-bell", "life", "config")
GROUP_FD_NAMES = ("life", "config", "control")  # a shared worker: its sessions' rings come over "control"
OPTIONAL_FD_NAMES = ("video-slot", "control")  # the latest camera frame, only when vision is enabled


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sonic_bridge.worker", description=__doc__)
    p.add_argument("--probe", action="store_true", help="print this worker environment's facts as JSON and exit")
    p.add_argument("--profile", default="", help="with --probe: the AWS profile whose credentials to look for")
    p.add_argument("--pooled", action="store_true", help="pre-started: --config is a template; the session's "
                   "own configuration arrives as the first inbound record")
    p.add_argument("--group", action="store_true", help="serve several sessions, each handed over on --control "
                   "with its rings; --config is the group's template")
    for name in FD_NAMES + OPTIONAL_FD_NAMES:
        p.add_argument(f"--{name}", type=int, help=f"inherited file descriptor: {name}")
    args = p.parse_args(argv)
    needed = GROUP_FD_NAMES if args.group else FD_NAMES
    missing = [name for name in needed if getattr(args, name.replace("-", "_")) is None]
    if not args.probe and missing:
        p.error(f"the host passes --{' --'.join(missing)}")
    return args


def read_config(fd: int) -> BridgeConfig:
    with os.fdopen(fd, "rb") as f:
        f.seek(0)
        return BridgeConfig.from_json(json.loads(f.read()))


_KNOWN_NOISE = ("AWS_ERROR_HTTP_STREAM_HAS_COMPLETED", "InvalidStateError")


def _quiet_known_sdk_noise(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """CRT finishes a body writer after the service ended the stream: harmless, and documented."""
    exc = context.get("exception")
    if exc is not None and any(n in f"{type(exc).__name__}: {exc}" for n in _KNOWN_NOISE):
        log.debug("ignored SDK shutdown noise: %s", exc)
        return
    loop.default_exception_handler(context)


def lower_priority() -> None:
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


def route_logs(handler: logging.Handler) -> None:
    """Worker log records travel to the host through a ring (never through inherited stderr)."""
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def process_setup(loop: asyncio.AbstractEventLoop, life_fd: int) -> asyncio.Event:
    """What every worker's loop does first; the event is set when the host is gone (the life pipe's EOF)."""
    host_gone = asyncio.Event()
    loop.set_exception_handler(_quiet_known_sdk_noise)
    loop.add_reader(life_fd, host_gone.set)  # readable means EOF: the host's end was closed
    return host_gone


async def serve(config: BridgeConfig, io: SessionIO, life_fd: int, *, pooled: bool = False) -> int:
    """Serve the process's one session. ``pooled``: ``config`` is a template (see run_session)."""
    loop = asyncio.get_running_loop()
    host_gone = process_setup(loop, life_fd)
    code = await run_session(io, config, Clock(loop), host_gone, pooled=pooled)
    if code == HOST_GONE:
        os._exit(0)  # nobody to report to: leave now, without waiting for any stream
    return code


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
        import botocore.session

        session = botocore.session.Session(profile=profile or None)
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
    if args.group:
        from sonic_bridge.worker.group import main as serve_group

        serve_group(args.config, args.control, args.life)  # never returns
    inbound = SharedRing.attach(args.in_ring)
    outbound = SharedRing.attach(args.out_ring)
    out_bell = Doorbell(args.out_bell)
    introduce(outbound, out_bell)
    outbox = Outbox(outbound, out_bell)
    outbox.beat()
    route_logs(RingLogHandler(outbox))
    try:
        config = read_config(args.config)
    except (OSError, ValueError, TypeError) as exc:
        outbox.send(
            ev.Error(errors.BAD_CONFIGURATION, f"worker could not read its configuration: {exc}", recoverable=False)
        )
        outbox.flush_before_exit()
        os._exit(2)
    logging.getLogger("sonic_bridge").setLevel(config.log_level)
    lower_priority()
    code = 1
    try:
        slot = FrameSlot.attach(args.video_slot) if args.video_slot is not None else None
        io = SessionIO(inbound, Doorbell(args.in_bell), outbound, out_bell, outbox, slot)
        code = asyncio.run(serve(config, io, args.life, pooled=args.pooled))
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
