"""Renewal before the connection limit, reconnects after faults: a long conversation through the real SDK."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge
from sonic_bridge import events as ev
from sonic_bridge.cli.demo import synth_utterance
from tests.fake_server import fake_server
from tests.helpers import has_state, run_until

pytest.importorskip("aws_sdk_bedrock_runtime")
pytestmark = [pytest.mark.sdk, pytest.mark.slow]

SCALE = 0.01  # 8-minute limit -> 4.8 s, 6-minute renewal -> 3.6 s; turn-taking stays at real speed


def scenario_file(tmp: Path, **extra: object) -> str:
    data = {"seed": 11, "connection_limit_s": 480 * SCALE, "speed": 4.0,
            # Global turn numbers: a turn cut by a fault is asked again as the next turn.
        "turns": [{}, {"fault": "model_stream_error"}, {}, {"fault": "truncated_frame"}, {},
                  {"fault": "disconnect"}], **extra}
    path = tmp / "scenario.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("door", ["in-process", "tls-server-with-profile"])
def test_a_long_conversation_crosses_renewals_and_faults_without_losing_a_frame_or_a_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, door: str
) -> None:
    with contextlib.ExitStack() as stack:
        common = {"session": SessionSettings(turn_sensitivity="HIGH"), "renew_after": 300 * SCALE,
                  "renew_force_after": 1.5, "max_reconnects": 4}
        if door == "in-process":
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
            config = BridgeConfig(fake=FakeOptions(via_sdk=True, scenario=scenario_file(tmp_path)), **common)
        else:
            # Credentials only in a shared config profile: the credential chain must find them, and the server
            # checks every event signature against that profile's secret.
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
                monkeypatch.delenv(name, raising=False)
            (tmp_path / "config").write_text("[profile sonic-test]\nregion = us-east-1\n")
            (tmp_path / "credentials").write_text(
                "[sonic-test]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n")
            monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
            monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
            monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
            server = stack.enter_context(fake_server(tmp_path, "--scenario", scenario_file(tmp_path),
                                                     "--verify-secret", "profile-secret"))
            config = BridgeConfig(backend="aws", endpoint=server.url, ca_file=server.ca, profile="sonic-test",
                                  **common)
        _long_conversation(config)


def _long_conversation(config: BridgeConfig) -> None:
    wall = 30 * 60 * SCALE + 6  # 30 scaled minutes, plus time for the last answer
    rate = 16000
    turn_audio = [synth_utterance(0.8, rate, 150 + 10 * k, seed=k) for k in range(12)]
    # 0.8 s of speech every 4.4 s: room for the end-of-turn pause, a fault, a reconnect and the re-asked answer.
    script = np.concatenate([np.concatenate([u, np.zeros(int(3.6 * rate), np.float32)]) for u in turn_audio])
    script = script[: int(30 * 60 * SCALE * rate)]
    spoken = sum(1 for k in range(12) if (k * 4.4 + 0.8) * rate <= len(script))
    frame = 320
    events: list[tuple[float, ev.Event]] = []
    with SonicBridge(config) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY), timeout=20)
        start = time.monotonic()
        i = cycle = 0
        while time.monotonic() - start < wall:
            due = start + cycle * 0.02
            time.sleep(max(0.0, due - time.monotonic()))
            chunk = script[i : i + frame] if i < len(script) else np.zeros(frame, np.float32)
            assert bridge.push_audio(chunk, rate)
            i += frame
            events += [(stamp / 1e9, e) for e, stamp in bridge.poll_timed()]  # when the worker sent each
            cycle += 1
        pushed = bridge.stats().frames_in
    events += [(stamp / 1e9, e) for e, stamp in bridge.poll_timed()]
    stats = bridge.stats()
    kinds = [e for _, e in events]

    states = [e.state for e in kinds if isinstance(e, ev.StateChanged)]
    renewals = states.count(ev.BridgeState.RENEWING)
    reconnects = states.count(ev.BridgeState.RECONNECTING)
    errors = [e for e in kinds if isinstance(e, ev.Error)]
    assert renewals >= 4, states
    assert reconnects >= 3 and len(errors) >= 3 and all(e.recoverable for e in errors), errors
    assert {e.message.split(":")[0] for e in errors} >= {"ModelStreamErrorException", "InvalidEventBytes"}

    # Every frame the host pushed was sent to a stream or reported dropped, with a reason.
    assert stats.frames_dropped_in == 0
    assert stats.worker_frames_sent + stats.worker_frames_dropped == pushed, stats
    assert stats.worker_frames_dropped == 0, stats.worker_drop_reason

    # Every user turn got an answer (a turn cut by a fault is asked again on the new stream).
    user_turns = [e for e in kinds if isinstance(e, ev.Transcript) and e.role is ev.Role.USER]
    answered = [e for e in kinds if isinstance(e, ev.TurnEnded) and e.stop_reason == "END_TURN"]
    heard = {e.text for e in user_turns}
    assert len({t for t in heard if "seconds of speech" in t}) >= spoken - 1, heard
    last_user = max(i for i, e in enumerate(kinds) if isinstance(e, ev.Transcript) and e.role is ev.Role.USER)
    assert any(isinstance(e, ev.TurnEnded) and e.stop_reason == "END_TURN" for e in kinds[last_user:])
    assert len(answered) >= len(heard), [e for e in kinds if not isinstance(e, ev.AudioOut | ev.Usage)]
    turn_ids = [e.turn_id for e in kinds if isinstance(e, ev.Transcript)]
    assert turn_ids == sorted(turn_ids)  # turn ids never go back across renewals and reconnects

    # Each switch, as the worker reported it: from RENEWING (turn boundary reached) to READY (new stream live).
    gaps = []
    for n, (t, e) in enumerate(events):
        if isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.RENEWING:
            ready = next(t2 for t2, e2 in events[n:] if isinstance(e2, ev.StateChanged)
                         and e2.state is ev.BridgeState.READY)
            gaps.append(ready - t)
    report = {"renewals": renewals, "reconnects": reconnects, "switch_ms": [round(g * 1000, 1) for g in gaps],
              "frames": pushed, "answers": len(answered)}
    print("session-manager figures:", json.dumps(report))
    assert max(gaps) < 2.0  # a switch waits at most renew_force_after for a turn boundary, plus the open
    out = os.environ.get("SONIC_BRIDGE_REPORT")
    if out:
        Path(out).write_text(json.dumps(report))
