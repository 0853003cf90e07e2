"""The worker process: ``python -m sonic_bridge.worker`` with the file descriptors the host made.

One asyncio loop runs the inbound ring reader, the session runner (protocol + backend stream) and the
outbound writer. The worker exits by itself as soon as its host is gone: the host holds the write
end of a pipe whose read end is here, and the kernel closes it however the host dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys

from sonic_bridge import codec, errors
from sonic_bridge import events as ev
from sonic_bridge import messages as msg
from sonic_bridge.config import BridgeConfig
from sonic_bridge.outbox import Outbox, RingLogHandler
from sonic_bridge.ring import Doorbell, SharedRing

log = logging.getLogger("sonic_bridge.worker")
HEARTBEAT_SECONDS = 0.1
ACCOUNT_SECONDS = 1.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sonic_bridge.worker", description=__doc__)
    for name in ("in-ring", "in-bell", "out-ring", "out-bell", "life", "config"):
        p.add_argument(f"--{name}", type=int, required=True, help=f"inherited file descriptor: {name}")
    return p.parse_args(argv)


def _read_config(fd: int) -> BridgeConfig:
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


def _lower_priority() -> None:
    # The host's 20 ms cycle matters more than ours: SCHED_BATCH stops our wake-ups from
    # preempting it on a shared core (docs/ipc-measurements.md, "wakeup preemption").
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


async def serve(config: BridgeConfig, inbound: SharedRing, in_bell: Doorbell, outbox: Outbox, life_fd: int) -> int:
    from sonic_bridge.backends import make_backend
    from sonic_bridge.runner import SessionRunner

    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    host_gone = asyncio.Event()

    def on_bell() -> None:
        in_bell.drain()
        wake.set()

    loop.set_exception_handler(_quiet_known_sdk_noise)
    loop.add_reader(in_bell.fd, on_bell)
    loop.add_reader(life_fd, host_gone.set)  # readable means EOF: the host's end was closed
    try:
        backend = make_backend(config)
    except Exception as exc:
        log.exception("could not set up the %s backend", config.backend)
        outbox.send(ev.Error(errors.BAD_CONFIGURATION, f"backend {config.backend!r}: {exc}", recoverable=False))
        outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))
        return 2
    runner = SessionRunner(config, backend, outbox)

    async def read_commands() -> None:
        while True:
            wake.clear()
            while (item := inbound.read()) is not None:
                try:
                    command = codec.decode(item[0])
                except codec.CodecError as exc:
                    log.error("dropped an unreadable host command: %s", exc)
                    continue
                if isinstance(command, msg.AudioIn | msg.TextIn | msg.ToolResultIn | msg.CloseIn):
                    runner.handle(command)
            await wake.wait()

    async def heartbeat() -> None:
        ticks = 0
        while True:
            outbox.beat()
            ticks += 1
            if ticks % int(ACCOUNT_SECONDS / HEARTBEAT_SECONDS) == 0:
                runner.report_audio()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    helpers = [asyncio.create_task(read_commands()), asyncio.create_task(heartbeat())]
    run = asyncio.create_task(runner.run())
    gone = asyncio.create_task(host_gone.wait())
    await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
    if gone.done():
        os._exit(0)  # nobody to report to: leave now, without waiting for any stream
    gone.cancel()
    for task in helpers:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(backend.aclose(), 2.0)
    runner.report_audio()
    outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    inbound = SharedRing.attach(args.in_ring)
    outbound = SharedRing.attach(args.out_ring)
    outbox = Outbox(outbound, Doorbell(args.out_bell))
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
        os._exit(2)
    logging.getLogger("sonic_bridge").setLevel(config.log_level)
    _lower_priority()
    code = 1
    try:
        code = asyncio.run(serve(config, inbound, Doorbell(args.in_bell), outbox, args.life))
    except Exception as exc:
        log.exception("worker failed")
        outbox.send(ev.Error(errors.WORKER_DIED, f"worker failed: {exc}", recoverable=False))
    # Leave at once: native SDK threads must not keep a process alive whose host is gone.
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
