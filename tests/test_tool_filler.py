"""A slow host tool: once per call, in silence, the model is nudged to say it is still working."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, Tool
from sonic_bridge import events as ev
from sonic_bridge.fake.model import STILL_WORKING
from sonic_bridge.worker.activity import Activity
from tests.fake_driver import silence16, tone16
from tests.helpers import run_until

WEATHER = Tool("get_weather", "the weather in a city", {"type": "object"})


def _said(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT
            and e.stage is ev.Stage.FINAL]


def _config(tmp_path: Path, via_sdk: bool, **config: object) -> BridgeConfig:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 2, "thinking_ms": [200, 300],
                                    "turns": [{"tool": "get_weather", "arguments": {"city": "Oslo"}}]}))
    return BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH", tools=(WEATHER,)),
                        fake=FakeOptions(via_sdk=via_sdk, scenario=str(scenario)), **config)  # type: ignore[arg-type]


class Host:
    """A 20 ms host with a silent mic, that times what it hears."""

    def __init__(self, bridge: SonicBridge) -> None:
        self.bridge = bridge
        self.events: list[tuple[float, ev.Event]] = []

    def until(self, done: object, timeout: float = 20.0) -> list[ev.Event]:
        return run_until(self.bridge, done, timeout, each_cycle=self._cycle)  # type: ignore[arg-type]

    def _cycle(self, _: int) -> None:
        self.bridge.push_audio(silence16(0.02), 16000)

    def for_seconds(self, seconds: float) -> list[ev.Event]:
        out: list[ev.Event] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._cycle(0)
            out += self.bridge.poll()
            time.sleep(0.02)
        return out


def _call(host: Host) -> tuple[ev.ToolCall, float]:
    host.until(lambda es: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY for e in es), 60)
    host.bridge.push_audio(tone16(0.8) + silence16(1.8), 16000)
    events = host.until(lambda es: any(isinstance(e, ev.ToolCall) for e in es))
    return next(e for e in events if isinstance(e, ev.ToolCall)), time.monotonic()


def test_a_slow_tool_gets_one_filler_in_silence_and_then_its_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with SonicBridge(_config(tmp_path, True, tool_filler_after=0.6)) as bridge:
        host = Host(bridge)
        call, called_at = _call(host)
        filler = host.until(lambda es: any(STILL_WORKING in t for t in _said(es)), timeout=15)
        waited = time.monotonic() - called_at
        assert waited >= 0.6, waited  # not before the delay
        assert any(isinstance(e, ev.AudioOut) for e in filler)  # it is heard, not only shown
        later = host.for_seconds(2.5)  # the host is slower still: no second filler for the same call
        assert not any(STILL_WORKING in t for t in _said(later)), _said(later)
        assert bridge.send_tool_result(call.tool_use_id, {"temp": -3})
        answer = host.until(lambda es: any("The tool said" in t for t in _said(es)), timeout=15)
    assert not [e for e in filler + later + answer if isinstance(e, ev.Error)]
    assert any('{"temp": -3}' in t for t in _said(answer))


@pytest.mark.parametrize("case", ["fast result", "filler off"])
def test_no_filler_for_a_quick_result_or_when_switched_off(tmp_path: Path, case: str) -> None:
    config = _config(tmp_path, False, tool_filler_after=None if case == "filler off" else 1.0)
    with SonicBridge(config) as bridge:
        host = Host(bridge)
        call, _ = _call(host)
        if case == "fast result":
            assert bridge.send_tool_result(call.tool_use_id, {"temp": -3})
            heard = host.until(lambda es: any("The tool said" in t for t in _said(es)), timeout=15)
            heard += host.for_seconds(2.0)
        else:
            heard = host.for_seconds(2.5)
            assert bridge.send_tool_result(call.tool_use_id, {"temp": -3})
            heard += host.until(lambda es: any("The tool said" in t for t in _said(es)), timeout=15)
    assert not any(STILL_WORKING in t for t in _said(heard)), _said(heard)


def test_filler_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"tool_filler_after must be a number from 0.2 to 300 seconds"):
        BridgeConfig(tool_filler_after=0.0)
    with pytest.raises(ValueError, match="tool_filler_text must be a non-empty string"):
        BridgeConfig(tool_filler_text="")
    assert BridgeConfig.from_json(BridgeConfig(tool_filler_after=None).to_json()).tool_filler_after is None


def test_activity_is_quiet_only_when_neither_speaks() -> None:
    a = Activity()
    voice = (np.full(320, 3000, np.int16)).tobytes()  # ~0.09 of full scale: voice
    hush = (np.full(320, 100, np.int16)).tobytes()  # ~0.003: a quiet room
    assert a.quiet(0.0)
    a.user_audio(hush, 1.0)
    assert a.quiet(1.0)
    a.user_audio(voice, 2.0)
    assert a.user_speaking(2.5) and not a.quiet(2.5)  # a pause between words is still speech
    assert a.quiet(2.9)
    a.model_audio(1.0, 10.0)  # one second of reply audio left at 10.0 and a second one right after
    a.model_audio(1.0, 10.1)
    assert a.model_speaking(11.9) and not a.model_speaking(12.0)
    a.model_audio(2.0, 20.0)
    a.model_stopped(20.5)  # a barge-in: the host dropped the rest
    assert a.quiet(20.5)
