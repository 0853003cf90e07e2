"""SessionSettings.greeting: the avatar speaks first when the session is ready, and again after a worker
restart only if the user never spoke."""

from __future__ import annotations

import os
import signal
import time

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge
from sonic_bridge import events as ev
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until

GREETING = "Greet the visitor in one short sentence."
GREETED = f'You wrote "{GREETING}"'  # the fake's reply to typed text echoes it


def _said(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT
            and e.stage is ev.Stage.FINAL]


def _answered(events: list[ev.Event]) -> bool:
    return any(isinstance(e, ev.TurnEnded) and e.stop_reason == "END_TURN" for e in events)


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> SonicBridge:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    return SonicBridge(BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH", greeting=GREETING),
                                    fake=FakeOptions(via_sdk=True), max_restarts=2))


def _kill_and_wait_ready(bridge: SonicBridge, feed: object) -> list[ev.Event]:
    os.kill(bridge.worker_pid or 0, signal.SIGKILL)
    return run_until(bridge, lambda es: any(isinstance(e, ev.Error) for e in es)
                     and has_state(ev.BridgeState.READY)(es), timeout=60, each_cycle=feed)  # type: ignore[arg-type]


def test_the_avatar_greets_first_and_again_after_a_restart_when_nobody_spoke(bridge: SonicBridge) -> None:
    with bridge:
        feed = lambda _: bridge.push_audio(silence16(0.02), 16000)  # noqa: E731 - a host's silent mic
        first = run_until(bridge, _answered, timeout=60, each_cycle=feed)  # no word from the user
        assert any(GREETED in t for t in _said(first)), _said(first)
        assert any(isinstance(e, ev.AudioOut) for e in first)
        assert not [e for e in first if isinstance(e, ev.Transcript) and e.role is ev.Role.USER]
        _kill_and_wait_ready(bridge, feed)
        again = run_until(bridge, _answered, timeout=30, each_cycle=feed)
        assert any(GREETED in t for t in _said(again)), _said(again)


def test_no_greeting_after_a_restart_once_the_user_has_spoken(bridge: SonicBridge) -> None:
    with bridge:
        feed = lambda _: bridge.push_audio(silence16(0.02), 16000)  # noqa: E731
        run_until(bridge, _answered, timeout=60, each_cycle=feed)  # the greeting
        bridge.push_audio(tone16(0.8) + silence16(1.8), 16000)
        spoke = run_until(bridge, _answered, timeout=20, each_cycle=feed)
        assert any("You spoke for 0.8 seconds" in t for t in _said(spoke))
        _kill_and_wait_ready(bridge, feed)
        quiet: list[ev.Event] = []
        deadline = time.monotonic() + 4.0  # the greeting came within ~1 s of READY above; nothing now
        while time.monotonic() < deadline:
            feed(0)
            quiet += bridge.poll()
            time.sleep(0.02)
        assert not _said(quiet) and not [e for e in quiet if isinstance(e, ev.AudioOut)]
        bridge.push_audio(tone16(0.6, freq=500) + silence16(1.8), 16000)  # the conversation goes on
        later = run_until(bridge, _answered, timeout=20, each_cycle=feed)
        assert any("You spoke for 0.6 seconds" in t for t in _said(later))


def test_a_greeting_needs_a_model_that_takes_text() -> None:
    with pytest.raises(ValueError, match="cannot speak first"):
        SessionSettings(model_id="amazon.nova-sonic-v1:0", greeting=GREETING)
    with pytest.raises(ValueError, match="greeting must be a non-empty string"):
        SessionSettings(greeting="  ")
    assert SessionSettings.from_json(SessionSettings(greeting=GREETING).to_json()).greeting == GREETING
