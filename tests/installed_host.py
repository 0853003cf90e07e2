"""A host program as a user writes it, run by the test of the installed layout (tests/test_user_layout.py).

It runs on the 3.11 host venv where sonic-bridge is installed from the wheel, speaks one utterance through
the bridge and prints what happened as JSON. ``argv``: ``via-sdk`` (fake Sonic through the real SDK in the
worker) or ``aws ENDPOINT CA_FILE`` (the real backend against ``sonic-bridge fake-server`` over TLS); a last
``group`` runs the session in a shared worker of a ``WorkerGroup``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import sonic_bridge
from sonic_bridge import (
    AudioOut,
    BridgeConfig,
    Error,
    FakeOptions,
    SessionSettings,
    SonicBridge,
    Transcript,
    TurnEnded,
    WorkerGroup,
)


def main(argv: list[str]) -> None:
    session = SessionSettings(turn_sensitivity="HIGH")
    if argv[0] == "via-sdk":
        config = BridgeConfig(session=session, fake=FakeOptions(via_sdk=True, seed=3))  # no worker_python set
    else:
        config = BridgeConfig(session=session, backend="aws", endpoint=argv[1], ca_file=argv[2])
    t = np.arange(16000) / 16000
    speech = (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    audio = np.concatenate([speech, np.zeros(int(16000 * 2.0), np.float32)])
    events = []
    group = WorkerGroup(config, sessions_per_worker=2) if argv[-1] == "group" else None
    with SonicBridge(config, group=group) as bridge:
        for i in range(0, len(audio), 320):
            bridge.push_audio(audio[i : i + 320], 16000)
            events += bridge.poll()
            time.sleep(0.02)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(isinstance(e, TurnEnded) for e in events):
            events += bridge.poll()
            time.sleep(0.02)
    events += bridge.poll()
    stats = bridge.stats()  # after close: the worker's final tally of the frames has arrived
    shared = group is not None and stats.worker_pid is None and bool(group.pids)  # the process outlives the session
    if group is not None:
        group.close()
    aws = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in
                  ("aws_sdk_bedrock_runtime", "smithy_core", "awscrt", "boto3", "botocore")})
    print(json.dumps({
        "host": list(sys.version_info[:2]), "sonic_bridge": sonic_bridge.__file__, "aws_modules_in_host": aws,
        "worker_python": stats.worker_python, "worker_version": stats.worker_version,
        "reply_seconds": sum(e.duration for e in events if isinstance(e, AudioOut)),
        "texts": [e.text for e in events if isinstance(e, Transcript)],
        "errors": [f"{e.code}: {e.message}" for e in events if isinstance(e, Error)],
        "frames_in": stats.frames_in, "worker_frames_sent": stats.worker_frames_sent,
        "worker_frames_dropped": stats.worker_frames_dropped, "shared_worker_outlived_session": shared,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
