"""update_session: voice, prompt, turn sensitivity, tools, tool choice and inference change mid-conversation,
applied by a renewal at a turn boundary with the history kept and no user audio lost; a restarted worker
keeps them."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, Inference, SessionSettings, SonicBridge, Tool
from sonic_bridge import events as ev
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until

WEATHER = Tool("get_weather", "the weather in a city", {"type": "object"})


def _said(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT
            and e.stage is ev.Stage.FINAL]


def _answered(events: list[ev.Event]) -> bool:
    return any(isinstance(e, ev.TurnEnded) and e.stop_reason == "END_TURN" for e in events)


def _settings_applied(events: list[ev.Event]) -> bool:
    return ev.StateChanged(ev.BridgeState.READY, ev.SETTINGS_UPDATED) in events


def _config(tmp_path: Path, **session: object) -> BridgeConfig:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 4, "reply_names_context": True, "thinking_ms": [200, 300]}))
    return BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH", **session),  # type: ignore[arg-type]
                        fake=FakeOptions(via_sdk=True, scenario=str(scenario)), max_restarts=2)


def test_every_setting_changes_mid_conversation_and_survives_a_worker_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with SonicBridge(_config(tmp_path)) as bridge:
        feed = lambda _: bridge.push_audio(silence16(0.02), 16000)  # noqa: E731 - a 20 ms host's silence
        run_until(bridge, has_state(ev.BridgeState.READY), timeout=60)
        bridge.push_audio(tone16(0.8) + silence16(1.8), 16000)
        first = run_until(bridge, _answered, timeout=20, each_cycle=feed)
        assert any("[voice matthew, turn sensitivity HIGH, tools none, tool choice auto, temperature 0.7, 0 history"
                   in t for t in _said(first)), _said(first)

        assert bridge.update_session(voice="tiffany", system_prompt="You are a pirate.", turn_sensitivity="LOW",
                                     tools=[WEATHER], tool_choice="any", inference=Inference(temperature=0.2))
        assert bridge.config.session.voice == "tiffany"  # the host keeps them at once (for a restart)
        applied = run_until(bridge, _settings_applied, timeout=20, each_cycle=feed)
        assert ev.StateChanged(ev.BridgeState.RENEWING, "settings") in applied
        assert not [e for e in applied if isinstance(e, ev.Error | ev.Warning)]

        bridge.push_audio(tone16(0.8, freq=500) + silence16(2.4), 16000)  # LOW: a 2 s pause ends the turn
        second = run_until(bridge, _answered, timeout=20, each_cycle=feed)
        (reply,) = [t for t in _said(second) if "[voice" in t]
        assert ("[voice tiffany, turn sensitivity LOW, tools get_weather, tool choice any, temperature 0.2"
                in reply), reply
        assert "last user 'turn 1: 0.8 seconds of speech'" in reply and "system prompt 'You are a pirate.'" in reply

        # Every frame the host pushed reached a stream: none lost to the switch.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            bridge.poll()
            s = bridge.stats()
            if s.worker_frames_sent == s.frames_in:
                break
            time.sleep(0.05)
        s = bridge.stats()
        assert (s.worker_frames_sent, s.worker_frames_dropped, s.frames_dropped_in) == (s.frames_in, 0, 0)

        # A worker that dies starts again with the new settings and the conversation.
        os.kill(bridge.worker_pid or 0, signal.SIGKILL)
        restarted = run_until(bridge, lambda es: any(isinstance(e, ev.Error) for e in es)
                              and has_state(ev.BridgeState.READY)(es), timeout=60, each_cycle=feed)
        assert [e.code for e in restarted if isinstance(e, ev.Error)] == ["worker_died"]
        bridge.push_audio(tone16(0.6, freq=700) + silence16(2.4), 16000)
        third = run_until(bridge, _answered, timeout=20, each_cycle=feed)
        (reply,) = [t for t in _said(third) if "[voice" in t]
        assert "[voice tiffany, turn sensitivity LOW, tools get_weather" in reply, reply
        assert "last user 'turn 2: 0.8 seconds of speech'" in reply


def test_a_bad_change_is_refused_as_at_start_and_changes_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path, tools=(WEATHER,))
    bridge = SonicBridge(_direct(config))
    with pytest.raises(RuntimeError, match="before start"):
        bridge.update_session(voice="amy")
    with bridge:
        for change, why in [({"voice": "zed"}, "'zed' is not available"),
                            ({"turn_sensitivity": "MAX"}, "turn_sensitivity must be one of"),
                            ({"tool_choice": "nope"}, "tool_choice must be 'auto', 'any' or a tool name"),
                            ({"tools": [WEATHER, WEATHER]}, "tool names must be unique"),
                            ({"tools": [WEATHER], "tool_choice": "get_time"}, "tool_choice"),
                            ({"system_prompt": ""}, "system_prompt must be a non-empty string"),
                            ({}, "needs at least one of")]:
            with pytest.raises(ValueError, match=why):
                bridge.update_session(**change)  # type: ignore[arg-type]
        assert bridge.config.session == _direct(config).session  # nothing changed
        with pytest.raises(TypeError):
            bridge.update_session(model_id="amazon.nova-2-5-sonic")  # type: ignore[call-arg]
    assert bridge.update_session(voice="amy") is False  # closed: quietly refused, counted
    assert bridge.stats().dropped_after_close == 1


def _direct(config: BridgeConfig) -> BridgeConfig:
    """The same bridge on the direct fake (no SDK needed for what never reaches a stream)."""
    import dataclasses

    return dataclasses.replace(config, fake=dataclasses.replace(config.fake, via_sdk=False))


def test_the_settings_command_round_trips_through_the_codec() -> None:
    from sonic_bridge.ipc import codec
    from sonic_bridge.ipc import messages as msg

    record = msg.SettingsIn(SessionSettings(voice="tiffany", tools=(WEATHER,)).dumps())
    back = codec.decode(codec.encode(record))
    assert back == record and SessionSettings.from_json(json.loads(record.session_json)).voice == "tiffany"
