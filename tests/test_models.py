"""The one model table: Nova 2.5 Sonic is first-class, Nova 2 Sonic the default, Nova Sonic 1 warned about."""

from __future__ import annotations

import logging

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, errors
from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.models import DEFAULT_MODEL_ID, FAMILIES, Family, Match, model_info
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until

NOVA1 = "amazon.nova-sonic-v1:0"


def _sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")


@pytest.mark.parametrize("model_id", [
    "amazon.nova-2-5-sonic", "us.amazon.nova-2-5-sonic", "global.amazon.nova-2-5-sonic"])
def test_nova_2_5_is_known_with_the_nova_2_features(model_id: str) -> None:
    info = model_info(model_id)
    assert info.family is Family.NOVA_2_5 and info.known and info.match is Match.KNOWN and info.problem is None
    assert info.supports_text_input and info.supports_turn_detection and info.supports_tool_choice
    assert info.voices == FAMILIES[Family.NOVA_2].voices and "pt-BR" in info.languages
    assert info.legacy_warning is None
    SessionSettings(model_id=model_id, voice="tina", turn_sensitivity="LOW", greeting="Greet the visitor.")


def test_the_table_is_the_only_source_of_each_familys_features() -> None:
    nova1, nova2 = model_info(NOVA1), model_info(DEFAULT_MODEL_ID)
    assert DEFAULT_MODEL_ID == "amazon.nova-2-sonic-v1:0" == SessionSettings().model_id
    assert "greta" in nova1.voices and "greta" not in nova2.voices and "tina" in nova2.voices
    assert nova1.languages == ("en-US", "en-GB", "fr-FR", "it-IT", "de-DE", "es-US")
    assert not (nova1.supports_text_input or nova1.supports_turn_detection or nova1.supports_tool_choice)
    assert "2026-09-14" in (nova1.legacy_warning or "") and DEFAULT_MODEL_ID in (nova1.legacy_warning or "")
    with pytest.raises(ValueError, match="no tool_choice setting"):
        SessionSettings(model_id=NOVA1, tools=(), tool_choice="any")


def test_a_nova_2_5_session_talks_through_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    _sdk(monkeypatch)
    config = BridgeConfig(session=SessionSettings(model_id="amazon.nova-2-5-sonic", turn_sensitivity="HIGH"),
                          fake=FakeOptions(via_sdk=True))
    with SonicBridge(config) as bridge:
        events = run_until(bridge, has_state(ev.BridgeState.READY), timeout=60)
        bridge.push_audio(tone16(0.8) + silence16(1.8), 16000)
        events += run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es), timeout=20)
    assert not [e for e in events if isinstance(e, ev.Error | ev.Warning)]
    assert any(isinstance(e, ev.AudioOut) for e in events)


def test_choosing_the_legacy_nova_sonic_1_warns_by_event_and_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _sdk(monkeypatch)
    config = BridgeConfig(session=SessionSettings(model_id=NOVA1), fake=FakeOptions(via_sdk=True))
    with caplog.at_level(logging.WARNING, logger="sonic_bridge"), SonicBridge(config) as bridge:
        events = run_until(bridge, has_state(ev.BridgeState.READY), timeout=60)
        bridge.push_audio(tone16(0.8) + silence16(2.2), 16000)  # it still talks (MEDIUM pause: 1.75 s)
        events += run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es), timeout=20)
    warnings = [e for e in events if isinstance(e, ev.Warning)]
    assert [w.code for w in warnings] == [errors.LEGACY_MODEL] and "end of life was 2026-09-14" in warnings[0].message
    assert events[0] == warnings[0]  # the host hears it first
    assert sum("legacy model" in r.getMessage() for r in caplog.records if r.name == "sonic_bridge.client") == 1
