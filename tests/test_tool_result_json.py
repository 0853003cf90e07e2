"""A tool result that is not JSON (NaN, infinity, a set) is refused on the host before anything is queued;
the call stays open and a proper answer still completes the turn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, Tool
from sonic_bridge import events as ev
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until


def test_nan_in_a_tool_result_is_refused_on_the_host_and_the_call_can_still_be_answered(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 5, "turns": [{"tool": "get_weather", "arguments": {"city": "Oslo"}}]}))
    config = BridgeConfig(
        session=SessionSettings(turn_sensitivity="HIGH", tools=(Tool("get_weather", "weather", {"type": "object"}),)),
        fake=FakeOptions(scenario=str(scenario)))
    with SonicBridge(config) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY))
        bridge.push_audio(tone16(0.8) + silence16(1.7), 16000)
        events = run_until(bridge, lambda es: any(isinstance(e, ev.ToolCall) for e in es), timeout=20)
        (call,) = [e for e in events if isinstance(e, ev.ToolCall)]
        for bad, why in (({"temp": math.nan}, r"nan at \['temp'\]; JSON has no NaN"),
                         ({"temp": [math.inf]}, r"inf at \['temp'\]\[0\]")):
            with pytest.raises(ValueError, match=why):
                bridge.send_tool_result(call.tool_use_id, bad)
        with pytest.raises(TypeError, match="set at"):
            bridge.send_tool_result(call.tool_use_id, {"temp": {1}})
        assert bridge.send_tool_result(call.tool_use_id, {"temp": -3})  # still waiting: accepted now
        events = run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es), timeout=20,
                           each_cycle=lambda _: bridge.push_audio(silence16(0.02), 16000))
    # Had a refused result been queued, the model would have used it and refused the second as a repeat.
    assert not [e for e in events if isinstance(e, ev.Error)]
    said = [e.text for e in events if isinstance(e, ev.Transcript)]
    assert any('{"temp": -3}' in t for t in said) and not any("NaN" in t or "Infinity" in t for t in said), said
