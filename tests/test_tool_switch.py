"""A tool call in flight when the stream is switched is not lost: its result reaches the new stream."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, Tool
from sonic_bridge import events as ev
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until


def test_a_tool_result_sent_after_a_forced_renewal_is_answered_on_the_new_stream(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 5, "turns": [{"tool": "get_weather", "arguments": {"city": "Oslo"}}]}))
    config = BridgeConfig(
        session=SessionSettings(turn_sensitivity="HIGH", tools=(Tool("get_weather", "weather", {"type": "object"}),)),
        renew_after=3.0, renew_force_after=0.5, fake=FakeOptions(scenario=str(scenario)))
    with SonicBridge(config) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY))
        bridge.push_audio(tone16(0.8) + silence16(1.7), 16000)
        events = run_until(bridge, lambda es: any(isinstance(e, ev.ToolCall) for e in es))
        (call,) = [e for e in events if isinstance(e, ev.ToolCall)]
        # The host takes its time; meanwhile the stream is renewed (forced: a tool call is pending).
        events = run_until(bridge, lambda es: has_state(ev.BridgeState.RENEWING)(es)
                           and has_state(ev.BridgeState.READY)(es), timeout=10,
                           each_cycle=lambda _: bridge.push_audio(silence16(0.02), 16000))
        assert bridge.send_tool_result(call.tool_use_id, {"temp": -3})
        events = run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es), timeout=10,
                           each_cycle=lambda _: bridge.push_audio(silence16(0.02), 16000))
        assert not [e for e in events if isinstance(e, ev.Error)]
        said = [e.text for e in events if isinstance(e, ev.Transcript)]
        assert any('{"temp": -3}' in t for t in said), said  # the new stream used the result
        assert ev.TurnEnded("END_TURN", next(e.response_id for e in events if isinstance(e, ev.TurnEnded))) in events


class AnsweringHost:
    """A 20 ms host that answers every tool call it gets, as the API requires; the first one only once
    ``first_when(events)`` holds."""

    def __init__(self, bridge: SonicBridge, first_when: Callable[[list[ev.Event]], bool]) -> None:
        self.bridge = bridge
        self.first_when = first_when
        self.events: list[ev.Event] = []
        self.answered: set[str] = set()

    def until(self, done: Callable[[list[ev.Event]], bool], timeout: float = 20.0) -> None:
        start = len(self.events)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.bridge.push_audio(silence16(0.02), 16000)
            self.events += self.bridge.poll()
            for call in [e for e in self.events if isinstance(e, ev.ToolCall)]:
                if call.tool_use_id not in self.answered and (self.answered or self.first_when(self.events)):
                    self.answered.add(call.tool_use_id)
                    assert self.bridge.send_tool_result(call.tool_use_id, {"temp": -3})
            if done(self.events[start:]):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out; got {[type(e).__name__ for e in self.events][-30:]}")


def _reconnected(events: list[ev.Event]) -> bool:
    states = [e.state for e in events if isinstance(e, ev.StateChanged)]
    return ev.BridgeState.RECONNECTING in states and ev.BridgeState.READY in states[
        states.index(ev.BridgeState.RECONNECTING):]


def _turn_answered(events: list[ev.Event]) -> bool:
    return any(isinstance(e, ev.TurnEnded) and e.stop_reason == "END_TURN" for e in events)


@pytest.mark.parametrize("door", ["direct", pytest.param("sdk", marks=pytest.mark.sdk)])
@pytest.mark.parametrize("answer", ["after_the_reconnect", "during_the_reconnect"])
def test_a_tool_call_pending_across_a_fault_is_answered_and_the_conversation_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, door: str, answer: str
) -> None:
    if door == "sdk":
        pytest.importorskip("aws_sdk_bedrock_runtime")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    # The stream fails while the first call waits for its result; the model calls the tool on later turns too.
    weather = {"tool": "get_weather", "arguments": {"city": "Oslo"}}
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 5, "turns": [{**weather, "fault": "model_stream_error"}, weather,
                                                         weather]}))
    config = BridgeConfig(
        session=SessionSettings(turn_sensitivity="HIGH", tools=(Tool("get_weather", "weather", {"type": "object"}),)),
        fake=FakeOptions(time_scale=0.5, scenario=str(scenario), via_sdk=door == "sdk"))
    first_when = _reconnected if answer == "after_the_reconnect" else has_state(ev.BridgeState.RECONNECTING)
    with SonicBridge(config) as bridge:
        host = AnsweringHost(bridge, first_when)
        host.until(has_state(ev.BridgeState.READY))
        bridge.push_audio(tone16(0.8) + silence16(1.0), 16000)
        host.until(_turn_answered)
        bridge.push_audio(tone16(0.6, freq=500) + silence16(1.0), 16000)  # the conversation goes on
        host.until(_turn_answered)
    errors_seen = [e for e in host.events if isinstance(e, ev.Error)]
    assert len(errors_seen) == 1 and errors_seen[0].recoverable, errors_seen  # the injected fault only
    assert "ModelStreamErrorException" in errors_seen[0].message
    said = [e.text for e in host.events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT]
    assert sum("The tool said" in t for t in said) >= 2, said  # both turns answered from a tool result
    calls = [e for e in host.events if isinstance(e, ev.ToolCall)]
    assert {c.tool_use_id for c in calls} == host.answered and len(calls) >= 2
