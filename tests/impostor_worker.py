"""A worker that claims another sonic-bridge version: what a worker venv left on an old release looks like.

Run as ``worker_python`` through a small wrapper script; it takes the worker's command line, introduces
itself with IMPOSTOR_VERSION (or, with IMPOSTOR_VERSION=none, writes an old-style first record), then
waits for its host to go away.
"""

from __future__ import annotations

import json
import os
import select
import sys

from sonic_bridge.ipc import handshake
from sonic_bridge.ipc.ring import Doorbell, SharedRing


def main(argv: list[str]) -> None:
    claimed = os.environ.get("IMPOSTOR_VERSION", "0.0.1")
    if "sonic_bridge.worker" not in argv:  # any other use of the interpreter: a plain Python
        os.execv(sys.executable, [sys.executable, *argv])
    if "--probe" in argv:
        print(json.dumps({"python": list(sys.version_info[:3]), "executable": sys.executable,
                          "sonic_bridge": claimed, "ring_protocol": handshake.RING_PROTOCOL, "modules": {},
                          "sdk": "0.12.0", "credentials": "env"}))
        return
    fds = {argv[i].lstrip("-"): int(argv[i + 1]) for i in range(len(argv) - 1) if argv[i].startswith("--")
           and argv[i + 1].isdigit()}
    ring = SharedRing.attach(fds["out-ring"])
    if claimed == "none":
        ring.try_write(b"\x01\x02 an old codec record")
    else:
        hello = handshake.Hello(claimed, handshake.RING_PROTOCOL, "3.12.0", sys.executable, os.getpid())
        ring.try_write(handshake.encode_hello(hello))
    Doorbell(fds["out-bell"]).ring()
    select.select([fds["life"]], [], [], 30)  # until the host closes its end (or kills us)


if __name__ == "__main__":
    main(sys.argv[1:])
