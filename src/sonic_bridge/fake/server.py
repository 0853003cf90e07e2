"""Door 2: the fake Sonic on the real wire protocol, HTTP/2 over TLS (ALPN h2), for any Nova Sonic client.

``sonic-bridge fake-server`` serves ``POST /model/{id}/invoke-with-bidirectional-stream`` with the
event-stream framing in both directions. Like the service it answers the headers at once, detects turns
from silence alone, ends a response only after the client ends its side (unless it reports an error),
and serves many streams per connection. Optionally it verifies the SigV4 event signature chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from sonic_bridge.fake import eventstream as es
from sonic_bridge.fake.direct import FakeService
from sonic_bridge.fake.model import FakeError, FakeSonic
from sonic_bridge.fake.scenario import Scenario
from sonic_bridge.fake.wire import ClientDisconnect, InputDecoder, error_response, model_id_from_path, render

log = logging.getLogger("sonic_bridge.fake.server")
_AUTH = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request.*Signature=([0-9a-f]{64})")


def make_certificates(directory: Path, sans: list[str]) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for ``sans``; returns (ca.pem, server.pem, server.key)."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*sans)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(paths[0]))
    cert.private_key_and_cert_chain_pem.write_to_path(str(paths[1]))
    cert.private_key_pem.write_to_path(str(paths[2]))
    return paths


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

    def check(self, date_ms: int, signature: bytes, payload: bytes) -> bool:
        stamp = dt.datetime.fromtimestamp(date_ms / 1000, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        date_header = es.encode_header(":date", es.TIMESTAMP, date_ms)
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp,
                             f"{self.day}/{self.region}/{self.service}/aws4_request", self.prior,
                             hashlib.sha256(date_header).hexdigest(), hashlib.sha256(payload).hexdigest()])
        expected = hmac.new(self.key, to_sign.encode(), hashlib.sha256).digest()
        self.prior = expected.hex()
        return hmac.compare_digest(expected, signature)


class _SigningDecoder(InputDecoder):
    def __init__(self, model: FakeSonic, chain: SignatureChain | None) -> None:
        super().__init__(model)
        self.chain = chain
        self._outer = es.Decoder()

    def feed(self, data: bytes, now: float) -> None:
        if self.chain is None:
            super().feed(data, now)
            return
        for headers, payload in self._outer.feed(data):
            if not self.chain.check(headers.get(":date", 0), headers.get(":chunk-signature", b""), payload):
                self.model._fail(FakeError("ValidationException", "The event signature does not match the signing "
                                           "key: check the credentials."), now)
                return
            super().feed(_reframe(headers, payload), now)


def _reframe(headers: dict[str, Any], payload: bytes) -> bytes:
    return es.encode_message([(":date", es.TIMESTAMP, headers.get(":date", 0)),
                              (":chunk-signature", es.BYTES, headers.get(":chunk-signature", b""))], payload)


@dataclass
class _Stream:
    model: FakeSonic
    decoder: InputDecoder
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    window: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class _Connection(asyncio.Protocol):
    def __init__(self, server: FakeSonicServer) -> None:
        self.server = server
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for stream in self.streams.values():
            if stream.task:
                stream.task.cancel()
        self.streams.clear()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        # Linux delays ACKs by ~40 ms and CRT sets no TCP_NODELAY: ack at once (docs/sonic-wire-and-sdk.md).
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("HTTP/2 protocol error from a client: %s", exc)
            self.flush()
            if self.transport:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._request(event.stream_id, dict(event.headers))  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.decoder.feed(event.data, self.loop.time())
                    stream.kick.set()
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.decoder.end(self.loop.time())
                    stream.kick.set()
            elif isinstance(event, h2.events.WindowUpdated):
                for s in self.streams.values():
                    s.window.set()
        self.flush()

    def _request(self, stream_id: int, headers: dict[str, str]) -> None:
        try:
            if headers.get(":method") != "POST":
                raise FakeError("ValidationException", "Only POST is supported")
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
        stream = _Stream(model, _SigningDecoder(model, chain))
        self.streams[stream_id] = stream
        stream.task = self.loop.create_task(self._respond(stream_id, stream))

    async def _respond(self, stream_id: int, stream: _Stream) -> None:
        try:
            while True:
                for item in stream.model.pump(self.loop.time()):
                    try:
                        data, last = render(item)
                    except ClientDisconnect:
                        if self.transport:
                            self.transport.abort()
                        return
                    if data:
                        await self._send(stream_id, stream, data)
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
        finally:
            self.server.service.release()
            self.streams.pop(stream_id, None)

    async def _send(self, stream_id: int, stream: _Stream, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                return
            if window <= 0:
                stream.window.clear()
                await stream.window.wait()
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(stream_id, bytes(chunk))
            self.flush()


class FakeSonicServer:
    def __init__(self, scenario: Scenario | None = None, *, verify_secret: str | None = None,
                 error: FakeError | None = None) -> None:
        self.service = FakeService(scenario or Scenario())
        self.verify_secret = verify_secret
        self.scenario_error = error
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, cert: Path, key: Path) -> int:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        context.set_alpn_protocols(["h2"])
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), host, port, ssl=context)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport:
                    conn.transport.abort()
            await self._server.wait_closed()
