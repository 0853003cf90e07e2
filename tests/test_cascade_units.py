"""The cascade's pure layers by plain calls: the sentence splitter, and the sans-IO fakes of Transcribe
streaming, ConverseStream and Polly (what the doors put on the wire is tested through the real clients in
test_cascade_bridge)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonic_bridge.engines.cascade.sentences import SentenceSplitter
from sonic_bridge.fake import converse_stream, polly, transcribe
from sonic_bridge.fake.model import END, FakeError
from sonic_bridge.fake.scenario import Scenario
from tests.helpers import tone

# ----------------------------------------------------------------------------------------- sentences


def split_streamed(text: str, cuts: list[int], max_chars: int = 300) -> list[str]:
    splitter = SentenceSplitter(max_chars)
    out: list[str] = []
    last = 0
    for cut in sorted(set(cuts)):
        out += splitter.feed(text[last:cut])
        last = cut
    return out + splitter.feed(text[last:]) + splitter.flush()


def test_sentences_come_out_as_soon_as_they_end() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there") == []
    assert splitter.feed(". It costs 1.5 euros, e.g. on") == ["Hello there."]  # "1.5" and "e.g." stay whole
    assert splitter.feed(" Monday! And you?") == ["It costs 1.5 euros, e.g. on Monday!"]
    assert splitter.flush() == ["And you?"] and splitter.flush() == []


def test_chinese_full_width_stops_and_line_breaks_end_sentences() -> None:
    assert split_streamed("你好。今天天气很好！你呢？", [2, 7]) == ["你好。", "今天天气很好！", "你呢？"]  # noqa: RUF001
    assert split_streamed("first line\nsecond line", [3]) == ["first line", "second line"]


def test_a_long_run_without_a_stop_is_cut_at_a_comma_or_space_within_the_limit() -> None:
    text = ", ".join(f"item {n}" for n in range(60))  # ~480 characters, no sentence end
    parts = split_streamed(text, [50, 200], max_chars=120)
    assert len(parts) >= 4 and all(len(p) <= 120 for p in parts)
    assert " ".join(parts).replace("  ", " ") == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["Yes", "no", "1.5", "e.g.", ",", " ", ". ", "! ", "? ", "。", "\n", "ok"]),
                max_size=40), st.lists(st.integers(0, 200), max_size=8))
def test_how_the_text_is_streamed_never_changes_the_sentences(pieces: list[str], cuts: list[int]) -> None:
    text = "".join(pieces)
    whole = split_streamed(text, [])
    assert split_streamed(text, [c for c in cuts if c <= len(text)]) == whole
    assert "".join(whole).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


# ----------------------------------------------------------------------------------------- Transcribe

HEADERS = {"x-amzn-transcribe-language-code": "en-US", "x-amzn-transcribe-media-encoding": "pcm",
           "x-amzn-transcribe-sample-rate": "16000"}
AUDIO = {":message-type": "event", ":event-type": "AudioEvent"}


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def stream_audio(model: transcribe.FakeTranscribe, samples: np.ndarray, start: float = 0.0) -> float:
    """Feed 20 ms events in audio time; returns the time after the last one."""
    now = start
    for i in range(0, len(samples), 320):
        model.feed(AUDIO, pcm16(samples[i : i + 320]), now)
        now += 0.02
    return now


@pytest.mark.parametrize(("change", "message"), [
    ({"x-amzn-transcribe-language-code": "xx-XX"}, "languageCode"),
    ({"x-amzn-transcribe-media-encoding": "mp3"}, "mediaEncoding"),
    ({"x-amzn-transcribe-sample-rate": "4000"}, "between 8000 and 48000"),
    ({"x-amzn-transcribe-identify-language": "true"}, "language code and language identification"),
])
def test_transcribe_refuses_a_request_as_the_service_does(change: dict[str, str], message: str) -> None:
    with pytest.raises(FakeError, match=message) as refused:
        transcribe.check_request({**HEADERS, **change})
    assert refused.value.kind == "BadRequestException"


def test_transcribe_sends_partials_while_speech_lasts_and_a_final_after_the_pause() -> None:
    turns = iter(range(1, 10))
    model = transcribe.FakeTranscribe(HEADERS, Scenario(), now=0.0, next_turn=lambda: next(turns))
    now = stream_audio(model, np.concatenate([tone(1.0, amp=0.3), np.zeros(16000, np.float32)]))
    results = [r["Transcript"]["Results"][0] for r in model.pump(now) if isinstance(r, dict)]
    partials = [r for r in results if r["IsPartial"]]
    finals = [r for r in results if not r["IsPartial"]]
    assert len(partials) >= 3 and len(finals) == 1  # every 0.25 s of speech, then one final
    assert finals[0]["Alternatives"][0]["Transcript"] == "turn 1: 1.0 seconds of speech"
    assert finals[0]["EndTime"] == pytest.approx(1.0, abs=0.03) and {r["ResultId"] for r in results} == \
        {finals[0]["ResultId"]}  # one utterance, one result id
    assert [p["Alternatives"][0]["Transcript"] for p in partials] == sorted(
        p["Alternatives"][0]["Transcript"] for p in partials)  # growing with the speech


def test_transcribe_ends_a_stream_that_gets_no_audio_for_15_seconds() -> None:
    model = transcribe.FakeTranscribe(HEADERS, Scenario(time_scale=0.1), now=0.0, next_turn=lambda: 1)
    stream_audio(model, np.zeros(1600, np.float32))
    due = model.next_due()
    assert due is not None and due == pytest.approx(0.08 + 1.5, abs=0.01)  # the last audio + 15 s scaled
    out = model.pump(due)
    assert isinstance(out[0], FakeError) and out[0].kind == "BadRequestException" and "15 seconds" in out[0].message
    assert out[-1] == END and model.next_due() is None


# ----------------------------------------------------------------------------------------- ConverseStream


def request(text: str, *, model_images: int = 0, tools: tuple[str, ...] = ()) -> bytes:
    from PIL import Image

    content: list[dict[str, Any]] = []
    for _ in range(model_images):
        jpeg = io.BytesIO()
        Image.new("RGB", (64, 48), (250, 10, 10)).save(jpeg, "JPEG")
        content.append({"image": {"format": "jpeg", "source": {"bytes": base64.b64encode(jpeg.getvalue()).decode()}}})
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [*content, {"text": text}]}]}
    if tools:
        body["toolConfig"] = {"tools": [{"toolSpec": {"name": t, "inputSchema": {"json": {}}}} for t in tools]}
    return json.dumps(body).encode()


def streamed_text(reply: converse_stream.StreamReply) -> str:
    return "".join(item["body"]["delta"].get("text", "") for _, item in reply.script
                   if isinstance(item, dict) and item["event"] == "contentBlockDelta")


def test_converse_stream_echoes_the_words_describes_the_images_and_counts_tokens() -> None:
    fake = converse_stream.FakeConverseStream(Scenario())
    reply = fake.handle("us.amazon.nova-2-lite-v1:0", request("hello there", model_images=2))
    assert reply.error is None
    assert streamed_text(reply) == 'You said: "hello there". This is my answer to turn 1. I see 2 images, the ' \
        "newest 64x48, mostly red."
    events = [item["event"] for _, item in reply.script if isinstance(item, dict)]
    assert events[0] == "messageStart" and events[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    usage = reply.script[-1][1]["body"]["usage"]  # type: ignore[index]
    assert usage["inputTokens"] > 0 and usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]


def test_converse_stream_asks_for_a_tool_the_words_name() -> None:
    fake = converse_stream.FakeConverseStream(Scenario())
    reply = fake.handle("amazon.nova-pro-v1:0", request("what is the weather?", tools=("weather",)))
    stops = [item["body"]["stopReason"] for _, item in reply.script
             if isinstance(item, dict) and item["event"] == "messageStop"]
    starts = [item["body"]["start"]["toolUse"]["name"] for _, item in reply.script
              if isinstance(item, dict) and item["event"] == "contentBlockStart"]
    assert stops == ["tool_use"] and starts == ["weather"]


@pytest.mark.parametrize(("model", "images", "status", "message"), [
    ("amazon.titan-text-v1", 0, 400, "model identifier is invalid"),
    ("amazon.nova-micro-v1:0", 1, 400, "takes text only"),
])
def test_converse_stream_refuses_as_the_service_does(model: str, images: int, status: int, message: str) -> None:
    reply = converse_stream.FakeConverseStream(Scenario()).handle(model, request("hi", model_images=images))
    assert reply.error is not None and reply.error.status == status and message in reply.error.body.decode()


def test_a_planned_throttle_is_refused_again_when_the_same_request_comes_back() -> None:
    fake = converse_stream.FakeConverseStream(Scenario.from_dict({"turns": [{"fault": "throttle"}]}))
    body = request("hi")
    first, again = fake.handle("amazon.nova-lite-v1:0", body), fake.handle("amazon.nova-lite-v1:0", body)
    assert first.error is not None and first.error.status == 429 and again is first
    assert fake.handle("amazon.nova-lite-v1:0", request("next")).error is None


# ----------------------------------------------------------------------------------------- Polly


def speak(**fields: Any) -> Any:
    body = {"Text": "Hello world.", "VoiceId": "Joanna", "OutputFormat": "pcm", "SampleRate": "16000",
            "Engine": "neural", **fields}
    return polly.FakePolly(Scenario()).handle(json.dumps(body).encode())


def test_polly_audio_lasts_as_long_as_its_text_and_bills_its_characters() -> None:
    short, long = speak(Text="Hi."), speak(Text="A much longer sentence to speak.")
    assert short.status == long.status == 200
    for reply, text in ((short, "Hi."), (long, "A much longer sentence to speak.")):
        assert len(reply.body) == pytest.approx(len(text) * polly.CHAR_S * 16000 * 2, rel=0.01)
        assert ("x-amzn-requestcharacters", str(len(text))) in reply.headers
    samples = np.frombuffer(long.body, "<i2")
    assert np.abs(samples).max() > 3000  # audible, not silence


@pytest.mark.parametrize(("fields", "kind"), [
    ({"VoiceId": "Nobody"}, "ValidationException"),
    ({"VoiceId": "Zhiyu", "Engine": "long-form"}, "EngineNotSupportedException"),
    ({"SampleRate": "22050"}, "InvalidSampleRateException"),
    ({"Text": "x" * 3001}, "TextLengthExceededException"),
    ({"LanguageCode": "fr-FR"}, "LanguageNotSupportedException"),
])
def test_polly_checks_its_parameters(fields: dict[str, Any], kind: str) -> None:
    reply = speak(**fields)
    assert reply.status == 400 and dict(reply.headers)["x-amzn-errortype"].startswith(kind)
