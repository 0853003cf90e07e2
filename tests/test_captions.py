"""Captions in step with the voice: every AudioOut carries the words estimated to start in it."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge
from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.captions import START_RATE, Captioner
from sonic_bridge.engines.sonic.protocol import INTERRUPTED_MARKER, SonicSession
from sonic_bridge.ipc import codec
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank today."


def _ev(name: str, **body: Any) -> dict[str, Any]:
    return {"event": {name: body}}


def _text_block(cid: str, text: str, stage: str, stop: str = "PARTIAL_TURN") -> list[dict[str, Any]]:
    return [_ev("contentStart", contentId=cid, type="TEXT", role="ASSISTANT",
                additionalModelFields=json.dumps({"generationStage": stage})),
            _ev("textOutput", contentId=cid, role="ASSISTANT", content=text),
            _ev("contentEnd", contentId=cid, type="TEXT", stopReason=stop)]


def _audio_block(cid: str, seconds: float, chunk: float = 0.08, stop: str = "PARTIAL_TURN") -> list[dict[str, Any]]:
    pcm = b"\1\0" * int(24000 * chunk)
    chunks = [_ev("audioOutput", contentId=cid, content=base64.b64encode(pcm).decode())
              for _ in range(round(seconds / chunk))]
    return [_ev("contentStart", contentId=cid, type="AUDIO", role="ASSISTANT"), *chunks,
            _ev("contentEnd", contentId=cid, type="AUDIO", stopReason=stop)]


def _feed(session: SonicSession, raw: list[dict[str, Any]]) -> list[ev.Event]:
    return [e for item in raw for e in session.receive(item)]


def _audio(events: list[ev.Event]) -> list[ev.AudioOut]:
    return [e for e in events if isinstance(e, ev.AudioOut)]


def test_the_captioner_never_splits_a_word_and_hands_out_the_whole_block() -> None:
    c = Captioner()
    c.sentence(SENTENCE)
    c.block_start()
    parts = [c.chunk(0.08) for _ in range(20)]  # 1.6 s: about 24 characters at the starting rate
    parts.append(c.block_end())
    assert "".join(parts) == SENTENCE
    assert parts[0] == "The "  # the first word shows when its sound starts
    words = set(SENTENCE.split())
    assert all(p.split() == [] or set(p.split()) <= words for p in parts)  # whole words only
    assert c.rate > START_RATE  # 70 characters in 1.6 s: it learned a faster voice


def test_each_chunk_carries_its_words_and_the_reply_reads_whole() -> None:
    s = SonicSession(SessionSettings(), captions=True)
    s.start()
    events = _feed(s, [*_text_block("t1", "Hello there, my friend.", "SPECULATIVE"), *_audio_block("a1", 1.6),
                       *_text_block("t2", "How are you today?", "SPECULATIVE"),
                       *_audio_block("a2", 1.2, stop="END_TURN"),
                       *_text_block("f1", "Hello there, my friend.", "FINAL"),
                       *_text_block("f2", "How are you today?", "FINAL", stop="END_TURN")])
    chunks = _audio(events)
    assert len(chunks) == 35  # every chunk, none lost to the look-ahead
    assert "".join(c.text for c in chunks) == "Hello there, my friend. How are you today?"
    assert [c.text_offset for c in chunks] == list(np.cumsum([0] + [len(c.text) for c in chunks[:-1]]))
    assert chunks[0].text == "Hello " and chunks[20].text.startswith(" How")  # each sentence with its audio
    assert sum(1 for c in chunks if c.text) > 4  # spread over the audio, not all at once
    turn_end = next(i for i, e in enumerate(events) if isinstance(e, ev.TurnEnded))
    assert all(events.index(c) < turn_end for c in chunks)


def test_an_interrupted_reply_ends_its_caption_where_the_audio_stopped() -> None:
    s = SonicSession(SessionSettings(), captions=True)
    s.start()
    raw = [*_text_block("t1", SENTENCE, "SPECULATIVE"), *_audio_block("a1", 1.6, stop="END_TURN")[:-1]]
    events = _feed(s, raw[:3 + 1 + 10])  # the text and 10 chunks (0.8 s) arrive, then the user barges in
    events += _feed(s, [_ev("contentEnd", contentId="a1", type="AUDIO", stopReason="END_TURN"),
                        *_text_block("x", INTERRUPTED_MARKER, "FINAL", stop="INTERRUPTED")])
    chunks = _audio(events)
    caption = "".join(c.text for c in chunks)
    assert len(chunks) == 9  # the held tenth chunk was never played
    assert SENTENCE.startswith(caption) and 0 < len(caption) < len(SENTENCE) / 2, caption
    assert any(isinstance(e, ev.Interrupted) for e in events)


def test_a_held_chunk_is_handed_out_by_flush_and_captions_are_off_by_default() -> None:
    s = SonicSession(SessionSettings(), captions=True)
    s.start()
    assert _audio(_feed(s, [*_text_block("t1", "Hi.", "SPECULATIVE"), *_audio_block("a1", 0.08)[:2]])) == []
    assert s.held_audio is not None and [c.text for c in _audio(s.flush_audio())] == ["Hi."]
    plain = SonicSession(SessionSettings())
    plain.start()
    events = _feed(plain, [*_text_block("t1", "Hi.", "SPECULATIVE"), *_audio_block("a1", 0.16)])
    assert [c.text for c in _audio(events)] == ["", ""]


def test_captions_cross_the_ring_and_stay_on_the_first_piece_of_a_split_chunk() -> None:
    chunk = ev.AudioOut(b"\0\1" * 100, 24000, ev.SampleFormat.INT16, "1.2", "héllo ", 17)
    assert codec.decode(codec.encode(chunk)) == chunk
    from sonic_bridge.ipc.ring import Doorbell, SharedRing
    from sonic_bridge.worker.outbox import Outbox

    ring, bell = SharedRing.create(64 * 1024, "test-captions"), Doorbell()
    try:
        big = ev.AudioOut(b"\0\0" * 20_000, 24000, ev.SampleFormat.INT16, "r", "many words", 5)
        assert Outbox(ring, bell).send(big)
        pieces = []
        while (item := ring.read()) is not None:
            pieces.append(codec.decode(item[0]))
        assert len(pieces) > 1 and b"".join(p.pcm for p in pieces) == big.pcm  # type: ignore[union-attr]
        assert [(p.text, p.text_offset) for p in pieces][:2] == [("many words", 5), ("", 15)]  # type: ignore[union-attr]
    finally:
        ring.close()
        bell.close()


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")


def _bridge(tmp_path: Path, speed: float) -> SonicBridge:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 1, "speed": speed, "thinking_ms": [200, 300],
                                    "turns": [{"reply_text": SENTENCE}, {"reply_text": SENTENCE}]}))
    return SonicBridge(BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH"),
                                    fake=FakeOptions(via_sdk=True, scenario=str(scenario))))


def test_through_the_bridge_the_words_travel_with_the_audio_that_speaks_them(tmp_path: Path, sdk: None) -> None:
    with _bridge(tmp_path, speed=4.0) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY), timeout=60)
        bridge.push_audio(tone16(3.0) + silence16(1.8), 16000)  # the reply echoes 3 s of audio
        events = run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es), timeout=20,
                           each_cycle=lambda _: bridge.push_audio(silence16(0.02), 16000))
    chunks = _audio(events)
    assert "".join(c.text for c in chunks) == SENTENCE
    assert chunks[0].text == "The "  # the first word with the first sound
    # Each word appears near where it is spoken: text position and audio position grow together.
    played, shown = 0.0, []
    for c in chunks:
        if c.text:
            shown.append((played / 3.0, (c.text_offset + len(c.text)) / len(SENTENCE)))
        played += c.duration
    assert len(shown) >= 5
    assert all(abs(audio - text) < 0.35 for audio, text in shown[1:-1]), shown


def test_through_the_bridge_a_barge_in_cuts_the_caption_with_the_audio(tmp_path: Path, sdk: None) -> None:
    with _bridge(tmp_path, speed=1.0) as bridge:  # real-time replies: the user can cut one off
        run_until(bridge, has_state(ev.BridgeState.READY), timeout=60)
        bridge.push_audio(tone16(3.0) + silence16(1.8), 16000)
        heard: list[ev.Event] = []
        started = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(isinstance(e, ev.Interrupted) for e in heard):
            fresh = bridge.poll()
            heard += fresh
            if started is None and _audio(fresh):
                started = time.monotonic()
            talking = started is not None and time.monotonic() - started > 1.2  # cut in after ~1.2 s
            bridge.push_audio(tone16(0.02, freq=600) if talking else silence16(0.02), 16000)
            time.sleep(0.02)
        heard += run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es), timeout=10,
                           each_cycle=lambda _: bridge.push_audio(silence16(0.02), 16000))
    (rid,) = {e.response_id for e in heard if isinstance(e, ev.Interrupted)}
    chunks = [c for c in _audio(heard) if c.response_id == rid]
    caption = "".join(c.text for c in chunks)
    assert SENTENCE.startswith(caption) and 0 < len(caption) < len(SENTENCE), caption
    spoken = sum(c.duration for c in chunks) / 3.0  # the share of the reply's audio that was delivered
    assert abs(len(caption) / len(SENTENCE) - spoken) < 0.35, (caption, spoken)
