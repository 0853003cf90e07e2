"""A raw HTTP/2 + TLS client for the fake server's hostile-client tests: every frame is the test's choice.

It frames input like the SDK (an outer message with ``:date``/``:chunk-signature`` around the inner event
message), or sends whatever bytes the test gives it; it can hold its flow-control window at zero, stop
reading altogether, dribble request headers, or flood.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

from sonic_bridge.fake import eventstream as es
from sonic_bridge.fake.wire import event_frame

NOVA2 = "amazon.nova-2-sonic-v1:0"


def signed(event: dict[str, Any]) -> bytes:
    """One input event in the SDK's envelope (the signature is not checked without --verify-secret)."""
    return envelope(event_frame(event))


def envelope(inner: bytes) -> bytes:
    headers = [(":date", es.TIMESTAMP, int(time.time() * 1000)), (":chunk-signature", es.BYTES, bytes(32))]
    return es.encode_message(headers, inner)


@dataclass
class RawStream:
    id: int
    status: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ended: bool = False  # END_STREAM from the server
    reset: int | None = None  # RST_STREAM error code from the server
    decoder: es.Decoder = field(default_factory=es.Decoder)

    def names(self) -> list[str]:
        return [next(iter(e["event"])) for e in self.events]

    def texts(self) -> list[str]:
        return [e["event"]["textOutput"]["content"] for e in self.events if "textOutput" in e["event"]]


class RawClient:
    def __init__(self, url: str, ca: str, *, window: int = 65535, read: bool = True, rcvbuf: int | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self.ca = ca
        self.window = window  # our receive window: 0 means the server may send no DATA at all
        self.read = read  # False: never read the socket (the server's writes back up in TCP)
        self.rcvbuf = rcvbuf  # a small socket receive buffer backs the server's writes up sooner
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        self.streams: dict[int, RawStream] = {}
        self.closed = asyncio.Event()  # the server closed the connection (or sent GOAWAY)
        self.settled = asyncio.Event()  # SETTINGS exchanged both ways: nothing more is sent on our own
        self._settings_seen = 0
        self.changed = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, *, preface: bool = True) -> RawClient:
        context = ssl.create_default_context(cafile=self.ca)
        context.set_alpn_protocols(["h2"])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self._reader, self._writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname=self.host)
        if preface:
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.window})
            self.conn.initiate_connection()
            await self.flush()
        if self.read:
            self._task = asyncio.get_running_loop().create_task(self._read())
            if preface:
                await asyncio.wait_for(self.settled.wait(), 20)
        return self

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self._writer is not None:
            self._writer.write(data)
            with contextlib.suppress(ConnectionError, OSError):
                await asyncio.wait_for(self._writer.drain(), 30)

    def write_raw(self, data: bytes) -> None:
        """Bytes straight onto the TLS stream (for hand-made HTTP/2 frames)."""
        assert self._writer is not None
        self._writer.write(data)

    async def flood(self, frame: bytes, limit: int) -> int:
        """``frame`` again and again until the server stops taking them (or ``limit`` bytes); bytes sent."""
        assert self._writer is not None
        sent = 0
        batch = frame * max(1, 16384 // len(frame))
        while sent < limit:
            self._writer.write(batch)
            sent += len(batch)
            try:
                await asyncio.wait_for(self._writer.drain(), 0.5)
            except (TimeoutError, ConnectionError, OSError):
                break  # it stopped reading from us (or dropped us)
        return sent

    async def open(self, model_id: str = NOVA2, *, end_headers: bool = True) -> RawStream:
        stream_id = self.conn.get_next_available_stream_id()
        path = f"/model/{urllib.parse.quote(model_id, safe='')}/invoke-with-bidirectional-stream"
        self.conn.send_headers(stream_id, [(":method", "POST"), (":scheme", "https"),
                                           (":authority", f"{self.host}:{self.port}"), (":path", path),
                                           ("content-type", "application/vnd.amazon.eventstream")])
        stream = self.streams[stream_id] = RawStream(stream_id)
        await self.flush()
        return stream

    async def send(self, stream: RawStream, data: bytes) -> None:
        """Data on a stream, cut to the peer's frame size and window (waits for window when needed)."""
        view = memoryview(data)
        while view:
            room = min(self.conn.local_flow_control_window(stream.id), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.changed.clear()
                await asyncio.wait_for(self.changed.wait(), 30)
                continue
            self.conn.send_data(stream.id, bytes(view[:room]))
            view = view[room:]
            await self.flush()

    async def send_events(self, stream: RawStream, events: list[dict[str, Any]]) -> None:
        await self.send(stream, b"".join(signed(e) for e in events))

    async def end(self, stream: RawStream) -> None:
        self.conn.end_stream(stream.id)
        await self.flush()

    async def wait(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        """Until ``done()``; raises TimeoutError with what was seen."""
        async def until() -> None:
            while not done():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            seen = {s.id: (s.status, s.names()[-5:], s.exceptions, s.ended, s.reset) for s in self.streams.values()}
            raise TimeoutError(f"timed out after {timeout} s; closed={self.closed.is_set()} streams={seen}") from None

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while data := await self._reader.read(65536):
                for event in self.conn.receive_data(data):
                    self._on(event)
                await self.flush()
                self.changed.set()
        except (ConnectionError, OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.closed.set()
            self.changed.set()

    def _on(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream:
            stream.status = dict(event.headers).get(":status")  # type: ignore[arg-type]
        elif isinstance(event, h2.events.DataReceived) and stream:
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream.id)
            for headers, payload in stream.decoder.feed(event.data):
                if headers.get(":message-type") == "event":
                    stream.events.append(json.loads(base64.b64decode(json.loads(payload)["bytes"])))
                else:
                    stream.exceptions.append((str(headers.get(":exception-type")), json.loads(payload or b"{}")))
        elif isinstance(event, h2.events.StreamEnded) and stream:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream:
            stream.reset = int(event.error_code or 0)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged | h2.events.SettingsAcknowledged):
            self._settings_seen += 1
            if self._settings_seen >= 2:
                self.settled.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.transport.abort()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
