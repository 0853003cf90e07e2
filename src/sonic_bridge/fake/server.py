"""Door 2: the fake Sonic on the real wire protocol, HTTP/2 over TLS (ALPN h2), for any Nova Sonic client.

``sonic-bridge fake-server`` serves ``POST /model/{id}/invoke-with-bidirectional-stream`` with the
event-stream framing in both directions; beside it the look tool's ``/model/{id}/converse`` and the cascade
engine's services at their real routes (``fake.cascade``): Transcribe's ``/stream-transcription`` (a duplex
event stream), ``/model/{id}/converse-stream`` (an event-stream response) and Polly's ``/v1/speech``.
Like the service it answers the headers at once, detects turns from silence alone, ends a response only
after the client ends its side (unless it reports an error), and serves many streams per connection.
Optionally it verifies the SigV4 event signature chain.

It is bounded like a service shared by many clients (``Limits``): a malformed frame is answered with an
exception on its own stream and the connection goes on; input held for incomplete events is capped per
event and per connection; a client that does not take its output (a zero flow-control window, or no
reading at all) loses the stream after ``stall_timeout`` and frees its quota; a connection with no open
stream and no progress (idle, or dribbling its request headers) is closed after ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import math
import os
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from sonic_bridge.fake import converse_stream, transcribe
from sonic_bridge.fake import eventstream as es
from sonic_bridge.fake.cascade import CONVERSE_STREAM, POLLY, TRANSCRIBE, error_headers, route
from sonic_bridge.fake.converse import MAX_REQUEST_BYTES, converse_model
from sonic_bridge.fake.direct import FakeService
from sonic_bridge.fake.model import END, FakeError, FakeSonic, Output
from sonic_bridge.fake.scenario import Scenario
from sonic_bridge.fake.wire import ClientDisconnect, InputDecoder, error_response, model_id_from_path, render

log = logging.getLogger("sonic_bridge.fake.server")
_AUTH = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request.*Signature=([0-9a-f]{64})")
MiB = 1024 * 1024
VISION_CONVERSE = "converse"


@dataclass(frozen=True, slots=True)
class Limits:
    """How far one client may go; each is a ``sonic-bridge fake-server`` option."""

    idle_timeout: float = 60.0  # s: a connection with no open stream and no progress is closed
    stall_timeout: float = 10.0  # s: an output event the client does not take in this time resets its stream
    max_event_bytes: int = MiB  # one input event-stream message; a longer one is refused at its first bytes
    max_buffered_input: int = 8 * MiB  # per connection: partial events and open text blocks of all its streams
    max_streams_per_connection: int = 100  # SETTINGS_MAX_CONCURRENT_STREAMS
    max_connections: int = 256  # more are closed at once

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            whole = f.type == "int"
            number = isinstance(value, int) if whole else isinstance(value, int | float) and math.isfinite(value)
            if isinstance(value, bool) or not number or value <= 0:
                kind = "a positive whole number" if whole else "a positive finite number of seconds"
                raise ValueError(f"{f.name} must be {kind}, got {value!r}")


def make_certificates(directory: Path, sans: list[str]) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for ``sans``; returns (ca.pem, server.pem, server.key).

    The files holding the private key are created readable by their owner only.
    """
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*sans)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.cert_pem.bytes())
    _write_private(paths[1], cert.private_key_and_cert_chain_pem.bytes())
    _write_private(paths[2], cert.private_key_pem.bytes())
    return paths


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, 0o600)  # an older file keeps its mode on open: set it
        out.write(data)


class SignatureChain:
    """Checks each event's :chunk-signature against the SigV4 chain seeded by the request signature."""

    def __init__(self, secret: str, authorization: str) -> None:
        found = _AUTH.search(authorization)
        if not found:
            raise FakeError("AccessDeniedException", "Missing or malformed Authorization header")
        _, self.day, self.region, self.service, self.prior = found.groups()
        key = ("AWS4" + secret).encode()
        for part in (self.day, self.region, self.service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self.key = key

    def check(self, date_ms: Any, signature: Any, payload: bytes) -> bool:
        if isinstance(date_ms, bool) or not isinstance(date_ms, int) or not isinstance(signature, bytes):
            return False
        try:
            stamp = dt.datetime.fromtimestamp(date_ms / 1000, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        except (OverflowError, OSError, ValueError):
            return False
        date_header = es.encode_header(":date", es.TIMESTAMP, date_ms)
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp,
                             f"{self.day}/{self.region}/{self.service}/aws4_request", self.prior,
                             hashlib.sha256(date_header).hexdigest(), hashlib.sha256(payload).hexdigest()])
        expected = hmac.new(self.key, to_sign.encode(), hashlib.sha256).digest()
        self.prior = expected.hex()
        return hmac.compare_digest(expected, signature)


class _SigningDecoder(InputDecoder):
    def __init__(self, model: FakeSonic, chain: SignatureChain | None, max_event_bytes: int) -> None:
        super().__init__(model, max_event_bytes=max_event_bytes)
        self.chain = chain

    def accept(self, headers: dict[str, Any], payload: bytes, now: float) -> bool:
        if self.chain is None or self.chain.check(headers.get(":date"), headers.get(":chunk-signature"), payload):
            return True
        self.model._fail(FakeError("ValidationException", "The event signature does not match the signing "
                                   "key: check the credentials."), now)
        return False


class _NoInput:
    """The decoder of a response whose request body is complete (ConverseStream, Polly): nothing more to read."""

    pending = 0
    broken = False

    def feed(self, data: bytes, now: float) -> None:
        return None

    def end(self, now: float) -> None:
        return None

    def refuse(self, error: FakeError, now: float) -> None:
        return None


class _Body:
    """A whole response body (Polly's audio) as a stream model, so that it is sent as flow control allows."""

    PIECE = 16 * 1024

    def __init__(self, body: bytes) -> None:
        self._pieces: list[Output] = [{"raw": body[i : i + self.PIECE]} for i in range(0, len(body), self.PIECE)]
        self._pieces.append(END)

    def pump(self, now: float) -> list[Output]:
        ready, self._pieces = self._pieces, []
        return ready

    def next_due(self) -> float | None:
        return None


def _raw(item: Output) -> tuple[bytes, bool]:
    return (item["raw"], False) if isinstance(item, dict) else (b"", True)


@dataclass
class _Stream:
    """One response being sent: a model that says what is due (``pump``/``next_due``), the decoder of its
    request body, how its outputs become bytes and what its end gives back (a stream quota)."""

    model: Any  # FakeSonic, FakeTranscribe, converse_stream.Script or _Body
    decoder: Any  # InputDecoder, transcribe.TranscribeInput or _NoInput
    release: Callable[[], None]
    render: Callable[[Output], tuple[bytes, bool]] = render
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    window: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class _Stalled(Exception):
    """The client did not take an output event within the stall timeout."""


class _Connection(asyncio.Protocol):
    def __init__(self, server: FakeSonicServer) -> None:
        self.server = server
        self.limits = server.limits
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.max_streams_per_connection,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 64 * 1024,
        })
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.loop = asyncio.get_running_loop()
        self.last_progress = self.loop.time()  # a request, an input event or an output event completed
        self.writable = asyncio.Event()  # cleared while the transport's buffer is full (the client reads nothing)
        self.writable.set()
        self.paused_since: float | None = None
        self._watch: asyncio.TimerHandle | None = None
        # Requests answered once their body is in (Converse, ConverseStream, Polly): route, model id, body.
        self.posts: dict[int, tuple[str, str, bytearray]] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # their answers (held: the loop keeps weak references only)

    # ------------------------------------------------------------------ transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if len(self.server.connections) >= self.limits.max_connections:
            log.warning("refusing a connection: %d are open (max_connections)", len(self.server.connections))
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self.conn.initiate_connection()
        self.flush()
        self._schedule_watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self._watch is not None:
            self._watch.cancel()
        for stream in self.streams.values():
            if stream.task:
                stream.task.cancel()
        for task in self.tasks:
            task.cancel()
        self.streams.clear()
        self.writable.set()  # wake senders so that they see the stream gone

    def pause_writing(self) -> None:
        # The client reads nothing: stop reading from it too, so that nothing more is queued for it.
        self.writable.clear()
        self.paused_since = self.loop.time()
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writable.set()
        self.paused_since = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _schedule_watch(self) -> None:
        period = min(1.0, max(0.05, min(self.limits.idle_timeout, self.limits.stall_timeout) / 4))
        self._watch = self.loop.call_later(period, self._check_progress)

    def _check_progress(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.paused_since is not None and now - self.paused_since > self.limits.stall_timeout:
            log.warning("dropping a connection that has read nothing for %.1f s", now - self.paused_since)
            self.transport.abort()
            return
        if not self.streams and now - self.last_progress > self.limits.idle_timeout:
            log.info("closing a connection idle for %.1f s", now - self.last_progress)
            self._close(h2.errors.ErrorCodes.NO_ERROR)
            return
        self._schedule_watch()

    def _close(self, code: h2.errors.ErrorCodes) -> None:
        """GOAWAY, then close; abort if the client does not let the close through."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection(code)
        self.flush()
        if self.transport is not None:
            self.transport.close()
            self.loop.call_later(1.0, self.transport.abort)

    # ------------------------------------------------------------------ input
    def data_received(self, data: bytes) -> None:
        # Linux delays ACKs by ~40 ms and CRT sets no TCP_NODELAY: ack at once (docs/sonic-wire-and-sdk.md).
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:  # an HTTP/2 connection error: GOAWAY was queued
            log.warning("HTTP/2 protocol error from a client: %s", exc)
            self.flush()
            if self.transport:
                self.transport.close()
            return
        for event in events:
            try:
                self._on(event)
            except Exception:  # a fault of the fake itself costs one stream, never the connection
                log.exception("fake server error on stream %s", getattr(event, "stream_id", None))
                self._fail(getattr(event, "stream_id", 0) or 0,
                           FakeError("InternalServerException", "The fake Sonic failed on this event."))
        self.flush()

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.last_progress = self.loop.time()
            self._request(event.stream_id, _text_headers(event.headers or []))
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            post = self.posts.get(event.stream_id)
            if post is not None and len(post[2]) <= MAX_REQUEST_BYTES:  # beyond it: refused at the end
                post[2].extend(event.data)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                before = getattr(stream.model, "input_events", 0)
                stream.decoder.feed(event.data, self.loop.time())
                if getattr(stream.model, "input_events", 0) != before:
                    self.last_progress = self.loop.time()
                self._check_buffered(stream)
                stream.kick.set()
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in self.posts:
                task = self.loop.create_task(self._answer(event.stream_id, *self.posts.pop(event.stream_id)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.decoder.end(self.loop.time())
                stream.kick.set()
        elif isinstance(event, h2.events.StreamReset):
            self.posts.pop(event.stream_id, None)
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.task is not None:
                stream.task.cancel()  # the client gave up the stream: nothing more can be sent on it
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            for s in self.streams.values():
                s.window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.flush()
            if self.transport:
                self.transport.close()

    def _check_buffered(self, stream: _Stream) -> None:
        held = sum(s.decoder.pending for s in self.streams.values())
        if held > self.limits.max_buffered_input and not stream.decoder.broken:
            stream.decoder.refuse(FakeError(
                "ValidationException", f"This connection holds {held} bytes of incomplete input, more than the "
                f"limit of {self.limits.max_buffered_input} bytes; send smaller events."), self.loop.time())

    def _fail(self, stream_id: int, error: FakeError) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.decoder.refuse(error, self.loop.time())
            stream.kick.set()

    def _request(self, stream_id: int, headers: dict[str, str]) -> None:
        try:
            if headers.get(":method") != "POST":
                raise FakeError("ValidationException", "Only POST is supported")
            path = headers.get(":path", "")
            vision_model = converse_model(path)
            if vision_model is not None:  # the look tool's Converse: answered once its body is in
                self.posts[stream_id] = (VISION_CONVERSE, vision_model, bytearray())
                return
            service = route(path)
            if service in (CONVERSE_STREAM, POLLY):
                self.posts[stream_id] = (service, converse_stream.converse_stream_model(path) or "", bytearray())
                return
            if service == TRANSCRIBE:
                self._transcribe(stream_id, headers)
                return
            model_id = model_id_from_path(headers.get(":path", ""))
            if self.server.scenario_error is not None:
                raise self.server.scenario_error
            chain = None
            if self.server.verify_secret is not None:
                chain = SignatureChain(self.server.verify_secret, headers.get("authorization", ""))
            model = self.server.service.new_stream(model_id, self.loop.time())
        except FakeError as err:
            status, fields, body = error_response(err)
            self.conn.send_headers(stream_id, [(":status", str(status)), *fields])
            self.conn.send_data(stream_id, body, end_stream=True)
            return
        self.conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/vnd.amazon.eventstream")])
        self._serve(stream_id, _Stream(model, _SigningDecoder(model, chain, self.limits.max_event_bytes),
                                       release=self.server.service.release))

    def _serve(self, stream_id: int, stream: _Stream) -> None:
        self.streams[stream_id] = stream
        stream.task = self.loop.create_task(self._respond(stream_id, stream))

    def _transcribe(self, stream_id: int, headers: dict[str, str]) -> None:
        """A Transcribe stream: audio events in, results out, both at once (as the Sonic stream)."""
        cascade = self.server.service.cascade
        try:
            model = cascade.open_transcribe(headers, self.loop.time())
        except FakeError as err:
            status, fields, body = error_headers(err)
            self.conn.send_headers(stream_id, [(":status", str(status)), *fields])
            self.conn.send_data(stream_id, body, end_stream=True)
            return
        self.conn.send_headers(stream_id, [(":status", "200"), *model.response_headers()])
        self._serve(stream_id, _Stream(model, transcribe.TranscribeInput(model, self.limits.max_event_bytes),
                                       release=cascade.release_transcribe, render=transcribe.render))

    async def _answer(self, stream_id: int, service: str, model_id: str, body: bytearray) -> None:
        """A request whose body is complete: Converse (the look tool), ConverseStream or Polly."""
        cascade = self.server.service.cascade
        if service == CONVERSE_STREAM:
            reply = cascade.converse.handle(model_id, bytes(body), cascade.thinking())
            if reply.error is None:
                with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    self.conn.send_headers(stream_id, [(":status", "200"),
                                                       ("content-type", "application/vnd.amazon.eventstream")])
                    self._serve(stream_id, _Stream(converse_stream.Script(reply.script, self.loop.time()), _NoInput(),
                                                   release=lambda: None, render=converse_stream.render))
                self.flush()
                return
            answer = reply.error
        elif service == POLLY:
            answer = cascade.polly.handle(bytes(body))
        else:
            answer = self.server.service.converse.handle(model_id, bytes(body))
            if answer.delay:
                await asyncio.sleep(answer.delay)
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.send_headers(stream_id, [(":status", str(answer.status)), *answer.headers,
                                               ("content-length", str(len(answer.body)))])
            self._serve(stream_id, _Stream(_Body(answer.body), _NoInput(), release=lambda: None, render=_raw))
        self.last_progress = self.loop.time()
        self.flush()

    # ------------------------------------------------------------------ output
    async def _respond(self, stream_id: int, stream: _Stream) -> None:
        try:
            while True:
                for item in stream.model.pump(self.loop.time()):
                    try:
                        data, last = stream.render(item)
                    except ClientDisconnect:
                        if self.transport:
                            self.transport.abort()
                        return
                    if data and not await self._send(stream_id, stream, data):
                        return
                    if last:
                        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                            self.conn.end_stream(stream_id)
                            self.flush()
                        return
                due = stream.model.next_due()
                stream.kick.clear()
                with contextlib.suppress(TimeoutError):
                    timeout = None if due is None else max(0.0, due - self.loop.time())
                    await asyncio.wait_for(stream.kick.wait(), timeout)
        except _Stalled:
            log.warning("resetting stream %d: the client took no output for %.1f s", stream_id,
                        self.limits.stall_timeout)
            with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                self.flush()
        finally:
            stream.release()
            self.streams.pop(stream_id, None)

    async def _send(self, stream_id: int, stream: _Stream, data: bytes) -> bool:
        """One output event, as the window allows; False if the stream is gone. Raises _Stalled."""
        deadline = self.loop.time() + self.limits.stall_timeout
        view = memoryview(data)
        while view:
            if self.transport is None or self.transport.is_closing():
                return False
            try:
                window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                return False
            waiting: asyncio.Event | None = None
            if not self.writable.is_set():
                waiting = self.writable  # the client reads nothing: TCP is full
            elif window <= 0:
                stream.window.clear()
                waiting = stream.window  # its flow-control window is closed
            if waiting is not None:
                try:
                    await asyncio.wait_for(waiting.wait(), max(0.0, deadline - self.loop.time()))
                except TimeoutError:
                    raise _Stalled from None
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(stream_id, bytes(chunk))
            self.flush()
        self.last_progress = self.loop.time()
        return True


def _text_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers as text; bytes that are not UTF-8 are replaced, never an error for the connection."""
    out: dict[str, str] = {}
    for name, value in raw:
        n = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        out[n] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out


class FakeSonicServer:
    def __init__(self, scenario: Scenario | None = None, *, verify_secret: str | None = None,
                 error: FakeError | None = None, limits: Limits | None = None) -> None:
        self.service = FakeService(scenario or Scenario())
        self.verify_secret = verify_secret
        self.scenario_error = error
        self.limits = limits or Limits()
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, cert: Path, key: Path) -> int:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        context.set_alpn_protocols(["h2"])
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), host, port, ssl=context,
            ssl_handshake_timeout=self.limits.idle_timeout)  # a handshake that never ends is an idle client too
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport:
                    conn.transport.abort()
            await self._server.wait_closed()
