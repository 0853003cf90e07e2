"""A tool call in flight when the stream is switched is not lost: its result reaches the new stream."""

from __future__ import annotations

import json
from pathlib import Path

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
