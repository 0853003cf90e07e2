"""application/vnd.amazon.eventstream framing (stdlib only, so the fake runs without the SDK).

A message is: u32 total length, u32 headers length, u32 CRC32 of those 8 bytes, the headers, the
payload, u32 CRC32 of everything before it. Each header is: u8 name length, name, u8 type, value.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

BOOL_TRUE, BOOL_FALSE, BYTE, SHORT, INT, LONG, BYTES, STRING, TIMESTAMP, UUID = range(10)
MAX_MESSAGE = 16 * 1024 * 1024 + 128 * 1024
_PRELUDE = struct.Struct(">III")


class FrameError(ValueError):
    """Bytes that are not a valid event-stream message (bad length or CRC)."""


def encode_header(name: str, kind: int, value: Any) -> bytes:
    raw = name.encode()
    head = bytes((len(raw),)) + raw + bytes((kind,))
    if kind in (BOOL_TRUE, BOOL_FALSE):
        return head
    if kind == BYTE:
        return head + struct.pack(">b", value)
    if kind == SHORT:
        return head + struct.pack(">h", value)
    if kind == INT:
        return head + struct.pack(">i", value)
    if kind in (LONG, TIMESTAMP):
        return head + struct.pack(">q", value)
    if kind == UUID:
        return head + bytes(value)
    data = value.encode() if isinstance(value, str) else bytes(value)
    return head + struct.pack(">H", len(data)) + data


def encode_message(headers: list[tuple[str, int, Any]], payload: bytes) -> bytes:
    head = b"".join(encode_header(n, k, v) for n, k, v in headers)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def string_headers(**values: str) -> list[tuple[str, int, Any]]:
    return [(f":{k.replace('_', '-')}", STRING, v) for k, v in values.items()]


def decode_headers(raw: bytes) -> dict[str, Any]:
    """The headers of one message; FrameError when they are cut short or not UTF-8."""
    try:
        return _decode_headers(raw)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed headers: {exc}") from None


def _decode_headers(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(raw):
        n = raw[i]
        name = raw[i + 1 : i + 1 + n].decode()
        kind = raw[i + 1 + n]
        i += 2 + n
        if kind in (BOOL_TRUE, BOOL_FALSE):
            out[name] = kind == BOOL_TRUE
        elif kind == BYTE:
            out[name] = struct.unpack_from(">b", raw, i)[0]
            i += 1
        elif kind == SHORT:
            out[name] = struct.unpack_from(">h", raw, i)[0]
            i += 2
        elif kind == INT:
            out[name] = struct.unpack_from(">i", raw, i)[0]
            i += 4
        elif kind in (LONG, TIMESTAMP):
            out[name] = struct.unpack_from(">q", raw, i)[0]
            i += 8
        elif kind == UUID:
            if i + 16 > len(raw):
                raise IndexError("UUID header cut short")
            out[name] = raw[i : i + 16]
            i += 16
        elif kind in (BYTES, STRING):
            size = struct.unpack_from(">H", raw, i)[0]
            if i + 2 + size > len(raw):
                raise IndexError(f"header {name} cut short")
            value = raw[i + 2 : i + 2 + size]
            out[name] = value.decode() if kind == STRING else bytes(value)
            i += 2 + size
        else:
            raise FrameError(f"unknown header type {kind}")
    return out


class Decoder:
    """Feed bytes in any chunking; take out whole messages as (headers, payload).

    A message longer than ``max_message`` is refused at its prelude, before any of it is buffered.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self.max_message = max_message

    def feed(self, data: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
        self._buf += data
        while len(self._buf) >= 12:
            total, head_len, crc = _PRELUDE.unpack_from(self._buf)
            if zlib.crc32(bytes(self._buf[:8])) != crc:
                raise FrameError("prelude CRC mismatch")
            if not 16 <= total <= MAX_MESSAGE or head_len > total - 16:
                raise FrameError(f"bad message length {total}")
            if total > self.max_message:
                raise FrameError(f"a message of {total} bytes is larger than the limit of {self.max_message} bytes")
            if len(self._buf) < total:
                return
            message = bytes(self._buf[:total])
            del self._buf[:total]
            if zlib.crc32(message[:-4]) != struct.unpack(">I", message[-4:])[0]:
                raise FrameError("message CRC mismatch")
            yield decode_headers(message[12 : 12 + head_len]), message[12 + head_len : -4]

    @property
    def pending(self) -> int:
        return len(self._buf)
