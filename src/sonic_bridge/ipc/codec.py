"""The one binary encoding used on the rings, for events, commands and log lines.

A message is one tag byte followed by its fields in declaration order. Fixed-width integers are
little-endian; strings and byte strings carry a u32 length. Audio stays raw bytes (never pickled),
and the tool-call arguments travel as JSON text. Decoding validates every length, so bad bytes
raise ``CodecError`` instead of producing a wrong value.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from sonic_bridge import events as ev
from sonic_bridge import jsonval
from sonic_bridge.ipc import messages as msg


class CodecError(ValueError):
    """The bytes are not a message of this encoding."""


_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
# Hot paths get a fixed header: tag, sample rate, format, seq/len of the id (and for reply audio the length
# and offset of its caption text).
_AUDIO_IN = struct.Struct("<BIBq")
_AUDIO_OUT = struct.Struct("<BIBHII")
AUDIO_OUT_HEADER = _AUDIO_OUT.size

# Field kinds: s=str, b=bytes, i=int64, f=float64, F=tuple of float64, ?=bool, j=JSON object, and enum classes.
_Kind = str | type[Any]

_SCHEMAS: dict[type[Any], tuple[int, tuple[_Kind, ...]]] = {
    ev.Transcript: (3, (ev.Role, ev.Stage, "s", "i")),
    ev.ToolCall: (4, ("s", "s", "j")),
    ev.Interrupted: (5, ("s",)),
    ev.TurnEnded: (6, ("s", "s")),
    ev.Usage: (7, ("i",) * 8),
    ev.StateChanged: (8, (ev.BridgeState, "s")),
    ev.Error: (9, ("s", "s", "?")),
    ev.Warning: (10, ("s", "s", "i")),
    ev.Look: (11, ("s", "s", "s", "F", "f", "s", "s")),
    msg.TextIn: (21, ("s",)),
    msg.ToolResultIn: (22, ("s", "s")),
    msg.CloseIn: (23, ()),
    msg.SettingsIn: (24, ("s",)),
    msg.LogLine: (30, ("i", "s", "s")),
    msg.AudioAccounted: (31, ("i", "i", "s")),
}
_TAG_AUDIO_OUT = 2
_TAG_AUDIO_IN = 20
_BY_TAG = {tag: (cls, kinds) for cls, (tag, kinds) in _SCHEMAS.items()}
_FORMATS = (ev.SampleFormat.INT16, ev.SampleFormat.FLOAT32)


def encode(value: ev.Event | msg.Command | msg.LogLine | msg.AudioAccounted) -> bytes:
    if isinstance(value, msg.AudioIn):
        return (
            _AUDIO_IN.pack(_TAG_AUDIO_IN, value.sample_rate, _FORMATS.index(value.sample_format), value.seq) + value.pcm
        )
    if isinstance(value, ev.AudioOut):
        rid = _utf8(value.response_id)
        text = _utf8(value.text) if value.text else b""
        head = _AUDIO_OUT.pack(_TAG_AUDIO_OUT, value.sample_rate, _FORMATS.index(value.sample_format), len(rid),
                               len(text), value.text_offset)
        return head + rid + text + value.pcm
    try:
        tag, kinds = _SCHEMAS[type(value)]
    except KeyError:
        raise TypeError(f"cannot encode {type(value).__name__}") from None
    parts = [bytes((tag,))]
    for kind, item in zip(kinds, _field_values(value), strict=True):
        parts.append(_encode_field(kind, item))
    return b"".join(parts)


def decode(data: bytes | memoryview) -> ev.Event | msg.Command | msg.LogLine | msg.AudioAccounted:
    buf = memoryview(data)
    if len(buf) == 0:
        raise CodecError("empty message")
    tag = buf[0]
    try:
        if tag == _TAG_AUDIO_IN:
            _, rate, fmt, seq = _AUDIO_IN.unpack_from(buf)
            pcm = bytes(buf[_AUDIO_IN.size :])
            return msg.AudioIn(pcm, rate, _format(fmt, len(pcm)), seq)
        if tag == _TAG_AUDIO_OUT:
            _, rate, fmt, rid_len, text_len, text_offset = _AUDIO_OUT.unpack_from(buf)
            start = _AUDIO_OUT.size
            if start + rid_len + text_len > len(buf):
                raise CodecError("audio message shorter than its response id and caption")
            rid = bytes(buf[start : start + rid_len]).decode()
            text = bytes(buf[start + rid_len : start + rid_len + text_len]).decode()
            pcm = bytes(buf[start + rid_len + text_len :])
            return ev.AudioOut(pcm, rate, _format(fmt, len(pcm)), rid, text, text_offset)
    except struct.error as exc:
        raise CodecError(f"truncated audio message: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CodecError(f"response id or caption is not UTF-8: {exc}") from None
    if tag not in _BY_TAG:
        raise CodecError(f"unknown message tag {tag}")
    cls, kinds = _BY_TAG[tag]
    offset = 1
    values: list[Any] = []
    for kind in kinds:
        value, offset = _decode_field(kind, buf, offset)
        values.append(value)
    if offset != len(buf):
        raise CodecError(f"{len(buf) - offset} trailing bytes after {cls.__name__}")
    if cls is ev.Usage:
        return ev.Usage(ev.TokenCounts(*values[:4]), ev.TokenCounts(*values[4:]))
    result: ev.Event | msg.Command | msg.LogLine | msg.AudioAccounted = cls(*values)
    return result


def _field_values(value: Any) -> list[Any]:
    if isinstance(value, ev.Usage):
        d, t = value.delta, value.total
        return [
            d.input_speech,
            d.input_text,
            d.output_speech,
            d.output_text,
            t.input_speech,
            t.input_text,
            t.output_speech,
            t.output_text,
        ]
    return [getattr(value, f.name) for f in fields(value)]


def _format(code: int, nbytes: int) -> ev.SampleFormat:
    if code >= len(_FORMATS):
        raise CodecError(f"unknown sample format code {code}")
    fmt = _FORMATS[code]
    if nbytes % fmt.width:
        raise CodecError(f"{nbytes} bytes of audio is not a whole number of {fmt.value} samples")
    return fmt


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800") becomes U+FFFD, not a crash
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def _encode_field(kind: _Kind, item: Any) -> bytes:
    if kind == "s":
        raw = _utf8(str(item))
        return _U32.pack(len(raw)) + raw
    if kind == "b":
        return _U32.pack(len(item)) + bytes(item)
    if kind == "i":
        return _I64.pack(item)
    if kind == "f":
        return _F64.pack(item)
    if kind == "F":
        return _U32.pack(len(item)) + struct.pack(f"<{len(item)}d", *item)
    if kind == "?":
        return b"\x01" if item else b"\x00"
    if kind == "j":
        raw = jsonval.dumps(item, what="a JSON field", compact=True).encode()
        return _U32.pack(len(raw)) + raw
    assert isinstance(kind, type)
    raw = str(item.value).encode()
    return _U32.pack(len(raw)) + raw


def _take(buf: memoryview, offset: int, size: int) -> tuple[memoryview, int]:
    end = offset + size
    if end > len(buf):
        raise CodecError(f"message truncated: needs {end} bytes, has {len(buf)}")
    return buf[offset:end], end


def _decode_field(kind: _Kind, buf: memoryview, offset: int) -> tuple[Any, int]:
    if kind == "i":
        raw, offset = _take(buf, offset, 8)
        return _I64.unpack(raw)[0], offset
    if kind == "f":
        raw, offset = _take(buf, offset, 8)
        return _F64.unpack(raw)[0], offset
    if kind == "F":
        head, offset = _take(buf, offset, 4)
        count = _U32.unpack(head)[0]
        raw, offset = _take(buf, offset, 8 * count)
        return struct.unpack(f"<{count}d", raw), offset
    if kind == "?":
        raw, offset = _take(buf, offset, 1)
        if raw[0] > 1:
            raise CodecError(f"bad boolean byte {raw[0]}")
        return raw[0] == 1, offset
    head, offset = _take(buf, offset, 4)
    raw, offset = _take(buf, offset, _U32.unpack(head)[0])
    if kind == "b":
        return bytes(raw), offset
    try:
        text = bytes(raw).decode()
    except UnicodeDecodeError as exc:
        raise CodecError(f"string field is not UTF-8: {exc}") from None
    if kind == "s":
        return text, offset
    if kind == "j":
        try:
            value = jsonval.loads(text, what="JSON field")
        except jsonval.JsonError as exc:  # invalid, NaN, or nested too deep to decode safely
            raise CodecError(str(exc)) from None
        if not isinstance(value, dict):
            raise CodecError(f"JSON field must be an object, got {type(value).__name__}")
        return value, offset
    assert isinstance(kind, type)
    converter: Callable[[str], Any] = kind
    try:
        return converter(text), offset
    except ValueError:
        raise CodecError(f"{text!r} is not a {kind.__name__}") from None
