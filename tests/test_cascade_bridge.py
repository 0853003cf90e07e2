"""The cascade engine (Transcribe -> Nova -> Polly) through the bridge, against the fakes via the real clients."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, Tool, VisionSettings
from sonic_bridge import events as ev
from sonic_bridge.engines.cascade.settings import CascadeSettings
from tests.cascade_host import CascadeHost
from tests.helpers import tone

pytest.importorskip("aws_sdk_transcribe_streaming")
pytest.importorskip("aws_sdk_polly")
pytestmark = pytest.mark.sdk

WEATHER = Tool("get_weather", "The weather in a city.", {"type": "object", "properties": {"city": {"type": "string"}}})
SCALE = 0.3


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")


def _config(tmp: Path, scenario: dict[str, Any], door: str = "sdk", stack: contextlib.ExitStack | None = None,
            vision: VisionSettings | None = None, **cascade: Any) -> BridgeConfig:
    """The fakes in process behind the SDK (door "sdk"), or `sonic-bridge fake-server` over TLS ("tls-server":
    backend "aws" with the three services' endpoints pointed at it)."""
    path = tmp / "scenario.json"
    path.write_text(json.dumps({"seed": 3, "time_scale": SCALE, **scenario}))
    session = SessionSettings(system_prompt="Be brief.", tools=(WEATHER,))
    if door == "tls-server":
        assert stack is not None
        from tests.fake_server import fake_server

        server = stack.enter_context(fake_server(tmp, "--scenario", str(path)))
        settings = CascadeSettings(transcribe_endpoint=server.url, polly_endpoint=server.url, **cascade)
        return BridgeConfig(session=session, engine="cascade", cascade=settings, backend="aws",
                            endpoint=server.url, ca_file=server.ca, vision=vision or VisionSettings())
    return BridgeConfig(session=session, engine="cascade", cascade=CascadeSettings(**cascade),
                        fake=FakeOptions(scenario=str(path)), vision=vision or VisionSettings())


def _turn_ended(count: int, reason: str = "END_TURN") -> Any:
    return lambda events: sum(isinstance(e, ev.TurnEnded) and e.stop_reason == reason for e in events) >= count


def _quiet_after(host: CascadeHost, count: int) -> Any:
    return lambda events: _turn_ended(count)(events) and host.quiet


@pytest.mark.parametrize("door", ["sdk", "tls-server"])
def test_three_turns_a_camera_turn_a_tool_round_trip_and_a_barge_in(door: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        config = _config(tmp_path, {"turns": [{}, {}, {"tool": "get_weather", "arguments": {"city": "Oslo"}}, {}]},
                         door, stack, vision=VisionSettings(enabled=True, frame_interval_s=0.25))
        bridge = stack.enter_context(SonicBridge(config))
        host = CascadeHost(bridge, tool_answer=lambda call: {"temp": 3, "city": call.arguments["city"]})
        host.run_until(lambda events: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY
                                          for e in events))
        for turn, seconds in enumerate((0.6, 1.0, 0.8), 1):
            if turn == 2:  # the camera turns on: turn 2 is answered with its newest frames
                host.camera = np.zeros((480, 640, 3), np.uint8)
                host.camera[..., 2] = 220  # blue
            host.say(tone(seconds, amp=0.3))
            host.run_until(_quiet_after(host, turn))
        # Turn 4 starts a long reply; the user speaks over it: a partial transcript interrupts it.
        host.say(tone(0.5, amp=0.3))
        host.run_until(lambda events: any(isinstance(e, ev.AudioOut) for e in events[-3:])
                       and _turn_ended(3)(events) and host.user_finals()[-1:] == ["turn 4: 0.5 seconds of speech"])
        playing = [e for e in host.events if isinstance(e, ev.AudioOut)][-1].response_id
        host.say(tone(0.7, amp=0.3, freq=330))
        host.run_until(lambda events: host.count(ev.Interrupted) == 1)
        host.run_until(_quiet_after(host, 5))
        bridge.close()
        host.events += bridge.poll()
        stats = bridge.stats()
    assert host.user_finals() == ["turn 1: 0.6 seconds of speech", "turn 2: 1.0 seconds of speech",
                                  "turn 3: 0.8 seconds of speech", "turn 4: 0.5 seconds of speech",
                                  "turn 5: 0.7 seconds of speech"]
    said = host.assistant_finals()
    assert 'You said: "turn 1: 0.6 seconds of speech".' in said and "This is my answer to turn 1." in said
    assert "This is my answer to turn 2." in said
    seen = [s for s in said if s.startswith("I see ")]  # the fake describes the images each turn carried
    assert seen and all(re.match(r"I see [1-5] images?, the newest 640x480, mostly blue", s) for s in seen), seen
    assert any(s.startswith("The tool said:") and '"temp": 3' in s and "Oslo" in s for s in said)
    calls = [e for e in host.events if isinstance(e, ev.ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo"})]
    assert host.count(ev.Interrupted) == 1 and ev.Interrupted(playing) in host.events
    cut = host.events.index(ev.Interrupted(playing))
    assert not any(isinstance(e, ev.AudioOut) and e.response_id == playing for e in host.events[cut:])
    assert host.count(ev.Transcript, role=ev.Role.USER, stage=ev.Stage.SPECULATIVE) >= 5
    usage = [e for e in host.events if isinstance(e, ev.Usage)]
    assert usage[-1].total.input_text > 0 and usage[-1].total.output_text > 0 and usage[-1].total.output_speech > 50
    audio = [e for e in host.events if isinstance(e, ev.AudioOut)]
    assert {(a.sample_rate, a.sample_format) for a in audio} == {(24000, ev.SampleFormat.FLOAT32)}
    assert float(np.max(np.abs(np.concatenate([a.samples() for a in audio])))) > 0.1
    first = audio[0].response_id  # captions: the chunks of a reply give its spoken text
    assert "".join(a.text for a in audio if a.response_id == first) == \
        'You said: "turn 1: 0.6 seconds of speech". This is my answer to turn 1.'
    assert stats.worker_frames_sent == host.frames_pushed and stats.worker_frames_dropped == 0


@pytest.mark.parametrize("door", ["sdk", "tls-server"])
def test_a_transcribe_renewal_and_injected_faults_lose_no_user_frame(door: str, tmp_path: Path) -> None:
    # Stream 1 is renewed after 3 s (at a pause); stream 2 fails after its first final result (a fault of
    # Transcribe), the reply of turn 3 fails mid-stream once (ConverseStream) and Polly throttles once.
    with contextlib.ExitStack() as stack:
        config = _config(tmp_path, {"transcribe_faults": [None, "internal_failure"], "polly_faults": [None, "throttle"],
                                    "turns": [{}, {}, {"fault": "model_stream_error"}]}, door, stack, renew_after_s=3.0)
        bridge = stack.enter_context(SonicBridge(config))
        host = CascadeHost(bridge)
        host.run_until(lambda events: host.count(ev.StateChanged, state=ev.BridgeState.READY) >= 1)
        for turn in (1, 2, 3):
            host.say(tone(0.6, amp=0.3))
            host.run_until(_quiet_after(host, turn))
        bridge.close()
        host.events += bridge.poll()
        stats = bridge.stats()
    states = [e.state for e in host.events if isinstance(e, ev.StateChanged)]
    assert ev.BridgeState.RENEWING in states and ev.BridgeState.RECONNECTING in states, states
    recoverable = [e for e in host.events if isinstance(e, ev.Error)]
    assert all(e.recoverable for e in recoverable), recoverable
    kinds = " ".join(e.message for e in recoverable)
    assert "InternalFailureException" in kinds or "processing the audio" in kinds
    assert "retrying" in kinds  # the throttled sentence and the failed reply were asked again
    assert len(host.user_finals()) == 3
    said = " ".join(host.assistant_finals())
    assert said.count("This is my answer to turn 3.") == 1  # the retried reply is not spoken twice
    assert stats.worker_frames_sent == host.frames_pushed and stats.worker_frames_dropped == 0
