from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sonic_bridge import codec
from sonic_bridge import events as ev
from sonic_bridge import messages as msg

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
    assert data.endswith(pcm_bytes) and len(data) - len(pcm_bytes) < 16
    assert b"pickle" not in data and not data.startswith(b"\x80")


@given(st.binary(max_size=64))
def test_bad_bytes_raise_codec_error_or_decode(data: bytes) -> None:
    with contextlib.suppress(codec.CodecError):
        codec.decode(data)


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
