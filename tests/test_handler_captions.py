"""The OpenAvatarChat handler sends AVATAR_TEXT as the captions of its AVATAR_AUDIO: each text chunk just ahead
of the audio chunk that speaks it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sonic_bridge.cli.demo import synth_utterance
from tests.test_openavatarchat_handler import Engine, engine_shutdown, oac  # noqa: F401 - the fixtures

SENTENCE = "Welcome to the museum, the dinosaurs are on the second floor, to your left."


@pytest.mark.parametrize("generation", ["classic", "stream"])
def test_avatar_text_travels_with_the_audio_it_speaks(
    oac: Any, generation: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # noqa: F811
) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 3, "thinking_ms": [200, 300], "turns": [{"reply_text": SENTENCE}]}))
    engine = Engine(oac, {"backend": "fake", "turn_sensitivity": "HIGH", "fake_scenario": str(scenario),
                     "prestart_workers": 0},
                    generation, monkeypatch)
    try:
        engine.mic(np.concatenate([synth_utterance(2.5, 16000, seed=1), np.zeros(32000, np.float32)]))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(d.data.get_meta("avatar_speech_end")
                                                      for d, _ in engine.of("AVATAR_AUDIO")):
            time.sleep(0.05)
    finally:
        engine.handler.destroy_context(engine.context)
    flow = [(d.type.name, d.data.get_meta("speech_id"), d.data.get_main_data(),
             d.data.get_meta("avatar_text_end") or d.data.get_meta("avatar_speech_end"))
            for d, _, _ in engine.submitted if d.type.name in ("AVATAR_TEXT", "AVATAR_AUDIO")]
    texts = [(i, sid, text) for i, (kind, sid, text, end) in enumerate(flow) if kind == "AVATAR_TEXT" and not end]
    assert "".join(text for _, _, text in texts) == SENTENCE
    assert len(texts) >= 4  # word groups spread over the reply, not the sentence at once
    for i, sid, _ in texts:  # each caption right ahead of the audio chunk that speaks it, same speech_id
        kind, audio_sid, _, end = flow[i + 1]
        assert (kind, audio_sid, end) == ("AVATAR_AUDIO", sid, False)
    assert flow[-1][0] == "AVATAR_AUDIO" and flow[-1][3]  # the reply's end markers close it
