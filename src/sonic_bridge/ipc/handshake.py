"""The worker's introduction: the first record it writes, in an encoding that never changes.

Everything else on the rings uses ``codec``, whose layout is private to one sonic-bridge version. The
host must be able to read this one record from a worker of *any* version, so it is a fixed magic
followed by JSON; a host and a worker that disagree on the version stop before anything else is read.

The worker also publishes its start-up step in the outbound ring's status word, so the host can tell a
worker that is still importing (slow on a busy machine, not stalled) from one that stopped answering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAGIC = b"SONIC-BRIDGE-HELLO/1\n"
# Bump whenever the ring layout, the codec or the worker's command line changes incompatibly.
RING_PROTOCOL = 3  # 3: the optional --video-slot fd and the Look event

# Start-up steps (the outbound ring's status word). Only SERVING means "watch the heartbeat".
LAUNCHED = 0
INTRODUCED = 1
IMPORTING = 2
CONNECTING_CREDENTIALS = 3
IDLE = 5  # a pre-started worker: imports done, credentials resolved, waiting for its session's configuration
SERVING = 10
ENDED = 100  # a shared worker's session ended, the process lives on: ENDED + its exit code (0 closed, 2, 3)

STEP_NAMES = {
    LAUNCHED: "starting its interpreter (it never introduced itself)",
    INTRODUCED: "reading its configuration",
    IMPORTING: "importing its backend (the AWS SDK and botocore for 'aws')",
    CONNECTING_CREDENTIALS: "resolving AWS credentials (a credential_process, SSO or instance role that never "
    "answers?)",
    IDLE: "waiting, pre-started, for its session",
    SERVING: "serving",
}



def ended(code: int) -> int:
    """The status word of a session that ended inside a shared worker with ``code``."""
    return ENDED + min(max(code, 0), 99)


def ended_code(status: int) -> int | None:
    """The exit code of a session that ended inside a shared worker, or None while it lives."""
    return status - ENDED if status >= ENDED else None


# A pre-started worker's first inbound record: the configuration of the session it now serves.
CONFIG_MAGIC = b"SONIC-BRIDGE-CONFIG/1\n"


def encode_config(config_json: bytes) -> bytes:
    return CONFIG_MAGIC + config_json


def parse_config(data: bytes) -> bytes | None:
    """The configuration JSON of a CONFIG record, or None when the record is something else."""
    return data[len(CONFIG_MAGIC) :] if data.startswith(CONFIG_MAGIC) else None


@dataclass(frozen=True, slots=True)
class Hello:
    version: str
    ring_protocol: int
    python: str  # "3.12.1"
    executable: str
    pid: int


def encode_hello(hello: Hello) -> bytes:
    body = {
        "version": hello.version,
        "ring_protocol": hello.ring_protocol,
        "python": hello.python,
        "executable": hello.executable,
        "pid": hello.pid,
    }
    return MAGIC + json.dumps(body).encode()


def parse_hello(data: bytes) -> Hello | None:
    """The introduction, or None when the record is not one (a worker from before the handshake)."""
    if not data.startswith(MAGIC):
        return None
    try:
        body = json.loads(data[len(MAGIC) :])
        return Hello(
            str(body["version"]), int(body["ring_protocol"]), str(body["python"]), str(body["executable"]),
            int(body["pid"]),
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def mismatch(hello: Hello | None, host_version: str, python: str) -> str | None:
    """Why this host cannot talk to this worker (with the fix), or None when they match."""
    fix = (
        f"make the worker environment match: `sonic-bridge worker-env --python <python3.12>` (creates one with "
        f"sonic-bridge {host_version}), or `{python} -m pip install 'sonic-bridge[aws]=={host_version}'`"
    )
    if hello is None:
        return (
            f"the worker at {python} did not introduce itself: its sonic-bridge is older than the handshake "
            f"(before 0.2), while the host runs sonic-bridge {host_version}; {fix}"
        )
    if hello.version != host_version or hello.ring_protocol != RING_PROTOCOL:
        return (
            f"the worker runs sonic-bridge {hello.version} (ring protocol {hello.ring_protocol}) at "
            f"{hello.executable}, the host sonic-bridge {host_version} (ring protocol {RING_PROTOCOL}); {fix}"
        )
    return None
