from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonic_bridge import events as ev
from sonic_bridge.ipc import codec
from sonic_bridge.ipc import messages as msg

text = st.text(max_size=40)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
fmt = st.sampled_from(list(ev.SampleFormat))
counts = st.builds(ev.TokenCounts, *(st.integers(0, 2**40),) * 4)
json_obj = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(-1000, 1000), st.text(max_size=8), st.booleans(), st.none()), max_size=4
)


@st.composite
def pcm(draw: st.DrawFn, f: ev.SampleFormat) -> bytes:
    return draw(st.binary(max_size=200).map(lambda b: b[: len(b) - len(b) % f.width]))


audio_out = fmt.flatmap(lambda f: st.builds(ev.AudioOut, pcm(f), st.integers(1, 192000), st.just(f), text))
audio_in = fmt.flatmap(lambda f: st.builds(msg.AudioIn, pcm(f), st.integers(1, 192000), st.just(f), i64))
any_message = st.one_of(
    audio_out,
    audio_in,
    st.builds(ev.Transcript, st.sampled_from(list(ev.Role)), st.sampled_from(list(ev.Stage)), text, i64),
    st.builds(ev.ToolCall, text, text, json_obj),
    st.builds(ev.Interrupted, text),
    st.builds(ev.TurnEnded, text, text),
    st.builds(ev.Usage, counts, counts),
    st.builds(ev.StateChanged, st.sampled_from(list(ev.BridgeState)), text),
    st.builds(ev.Error, text, text, st.booleans()),
    st.builds(ev.Warning, text, text, i64),
    st.builds(msg.TextIn, text),
    st.builds(msg.ToolResultIn, text, text),
    st.just(msg.CloseIn()),
    st.builds(msg.LogLine, i64, text, text),
    st.builds(msg.AudioAccounted, i64, i64, text),
)


@given(any_message)
def test_every_message_round_trips_exactly(value: object) -> None:
    data = codec.encode(value)  # type: ignore[arg-type]
    back = codec.decode(data)
    assert back == value
    if isinstance(value, ev.ToolCall):
        assert back.arguments == value.arguments  # type: ignore[union-attr]


def test_audio_travels_as_raw_bytes_not_pickled() -> None:
    pcm_bytes = bytes(range(256)) * 4
    data = codec.encode(ev.AudioOut(pcm_bytes, 24000, ev.SampleFormat.INT16, "r1"))
    assert data.endswith(pcm_bytes) and len(data) - len(pcm_bytes) < 24  # header, id, no caption
    assert b"pickle" not in data and not data.startswith(b"\x80")


@given(st.binary(max_size=64))
def test_bad_bytes_raise_codec_error_or_decode(data: bytes) -> None:
    with contextlib.suppress(codec.CodecError):
        codec.decode(data)


def _field(raw: bytes) -> bytes:
    return len(raw).to_bytes(4, "little") + raw


def _tool_call_bytes(arguments: bytes) -> bytes:
    return b"\x04" + _field(b"get_weather") + _field(b"t1") + _field(arguments)


# Bytes near real messages reach deeper than random ones: valid encodings cut, flipped or extended,
# and tool calls whose JSON field is hostile (deep, NaN, not an object, not UTF-8).
hostile_json = st.one_of(
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 200_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([b'{"x": NaN}', b'{"x": -Infinity}', b'{"x": 1e999}', b"[1, 2]", b'"text"', b"null", b"\xff{}"]),
    st.binary(max_size=40),
)
near_messages = st.one_of(
    hostile_json.map(_tool_call_bytes),
    st.tuples(any_message.map(codec.encode), st.integers(0, 300), st.integers(0, 255)).map(
        lambda t: t[0][: t[1]] + bytes([t[2]]) + t[0][t[1] + 1 :]
    ),
    st.tuples(any_message.map(codec.encode), st.integers(0, 300)).map(lambda t: t[0][: t[1]]),
    st.tuples(any_message.map(codec.encode), st.binary(min_size=1, max_size=8)).map(lambda t: t[0] + t[1]),
)


@settings(max_examples=500, deadline=None)
@given(near_messages)
def test_only_codec_error_comes_out_of_decoding_arbitrary_bytes(data: bytes) -> None:
    try:
        value = codec.decode(data)
    except codec.CodecError:
        return
    assert codec.decode(codec.encode(value)) == value  # whatever decodes is a message that round-trips


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
        (b'{"a":' * 500 + b"1" + b"}" * 500, "nested deeper than 64"),
        (b'{"x": NaN}', "NaN is not JSON"),
        (b'{"x": 1e999}', "out of range"),
        (b"[1, 2]", "must be an object, got list"),
    ],
)
def test_a_hostile_json_field_is_a_codec_error_not_a_crash(arguments: bytes, why: str) -> None:
    with pytest.raises(codec.CodecError, match=why):
        codec.decode(_tool_call_bytes(arguments))


def test_a_lone_surrogate_from_the_service_is_replaced_not_fatal() -> None:
    text = json.loads('"caf\\ud800e"')  # valid JSON, not valid UTF-8
    back = codec.decode(codec.encode(ev.Transcript(ev.Role.ASSISTANT, ev.Stage.FINAL, text, 1)))
    assert back == ev.Transcript(ev.Role.ASSISTANT, ev.Stage.FINAL, "caf\ufffde", 1)
    back = codec.decode(codec.encode(ev.ToolCall(text, "t", {"k": text})))
    assert back.arguments == {"k": text}  # type: ignore[union-attr]  # JSON escapes it: kept exactly


def test_a_tool_call_with_nan_is_refused_when_encoded() -> None:
    with pytest.raises(ValueError, match="JSON has no NaN"):
        codec.encode(ev.ToolCall("x", "t", {"v": float("nan")}))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\xff", "unknown message tag 255"),
        (b"\x03\x00", "truncated"),
        (codec.encode(ev.Interrupted("r1")) + b"x", "trailing bytes"),
        (codec.encode(ev.AudioOut(b"\0\0\0\0", 24000, ev.SampleFormat.FLOAT32, ""))[:-1], "whole number"),
    ],
)
def test_decoding_errors_say_what_is_wrong(data: bytes, why: str) -> None:
    with pytest.raises(codec.CodecError, match=why):
        codec.decode(data)
