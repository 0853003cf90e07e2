"""The fake Sonic on the wire: frames in, model, frames out. Shared by the SDK transport and the TLS server.

Input frames are the SDK's signed envelopes (outer ``:date``/``:chunk-signature``, inner JSON
``{"bytes": base64}``); an empty outer payload is the end of input. Output frames are unsigned events
or exceptions, rendered from the model's outputs.
"""

from __future__ import annotations

import base64
import collections
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

from sonic_bridge.engines.sonic.models import model_info
from sonic_bridge.fake import eventstream as es
from sonic_bridge.fake.model import DISCONNECT, END, TRUNCATE, FakeError, FakeSonic, Output

HTTP_STATUS = {"ValidationException": 400, "AccessDeniedException": 403, "ResourceNotFoundException": 404,
               "ThrottlingException": 429, "InternalServerException": 500, "ServiceUnavailableException": 503}
INVALID_MODEL = "The provided model identifier is invalid."


def model_id_from_path(path: str) -> str:
    """``/model/<url-encoded id>/invoke-with-bidirectional-stream[?]`` -> the model id, or raise FakeError."""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) != 4 or parts[1] != "model" or parts[3] != "invoke-with-bidirectional-stream":
        raise FakeError("ResourceNotFoundException", f"Unknown operation path {path}")
    model_id = urllib.parse.unquote(parts[2])
    try:
        model_info(model_id, warn=False)
    except ValueError:
        raise FakeError("ValidationException", INVALID_MODEL) from None
    return model_id


def error_response(err: FakeError) -> tuple[int, list[tuple[str, str]], bytes]:
    """A modelled HTTP error: status, headers (with x-amzn-errortype), JSON body."""
    status = HTTP_STATUS.get(err.kind, 400)
    headers = [("content-type", "application/json"), ("x-amzn-errortype", f"{err.kind}:http://internal.amazon.com/")]
    return status, headers, json.dumps({"message": err.message}).encode()


def event_frame(event: dict[str, Any]) -> bytes:
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
    headers = es.string_headers(message_type="event", event_type="chunk", content_type="application/json")
    return es.encode_message(headers, payload)


def exception_frame(err: FakeError) -> bytes:
    member = err.kind[0].lower() + err.kind[1:]
    body: dict[str, Any] = {"message": err.message}
    if err.kind == "ModelStreamErrorException":
        body.update(originalStatusCode=500, originalMessage=err.message)
    headers = es.string_headers(message_type="exception", exception_type=member, content_type="application/json")
    return es.encode_message(headers, json.dumps(body).encode())


class ClientDisconnect(ConnectionError):
    """The fake drops the connection (scenario fault 'disconnect')."""


def render(item: Output) -> tuple[bytes, bool]:
    """Wire bytes for one model output, and whether the response ends after them."""
    if isinstance(item, dict):
        return event_frame(item), False
    if isinstance(item, FakeError):
        return exception_frame(item), True
    if item == TRUNCATE:
        frame = event_frame({"event": {"audioOutput": {"content": "AAAA"}}})
        return frame[: len(frame) // 2], True
    if item == DISCONNECT:
        raise ClientDisconnect("the fake Sonic dropped the connection")
    assert item == END
    return b"", True


class InputDecoder:
    """Signed input envelopes -> model.feed / model.end_input.

    Bytes that are not a valid envelope (bad CRC or length, an inner event that is not base64 JSON)
    fail this stream with a ValidationException, as the service answers them; later bytes are ignored.
    """

    def __init__(self, model: FakeSonic, *, max_event_bytes: int = es.MAX_MESSAGE) -> None:
        self.model = model
        self._frames = es.Decoder(max_event_bytes)
        self.signatures: collections.deque[bytes] = collections.deque(maxlen=4096)  # the latest, for tests
        self.ended = False
        self.broken = False

    @property
    def pending(self) -> int:
        """Input bytes held for this stream: a partial envelope and what the model keeps for later events."""
        return self._frames.pending + self.model.buffered_input

    def feed(self, data: bytes, now: float) -> None:
        if self.broken or self.ended:
            return  # after the end frame or a refusal nothing more is read
        try:
            for headers, payload in self._frames.feed(data):
                if not self.accept(headers, payload, now):
                    self._stop()
                    return
                self.signatures.append(headers.get(":chunk-signature", b""))
                if not payload:
                    self.ended = True
                    self.model.end_input(now)
                    return
                for event in _inner_events(payload):
                    self.model.feed(event, now)
                    if self.model.failed:
                        self._stop()
                        return
        except (es.FrameError, ValueError, TypeError, KeyError, RecursionError) as exc:
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            self.refuse(FakeError("ValidationException", f"Invalid input event bytes: {detail}"), now)

    def accept(self, headers: dict[str, Any], payload: bytes, now: float) -> bool:
        """A check of each envelope before its event is read (the signature chain); False refuses it."""
        return True

    def refuse(self, error: FakeError, now: float) -> None:
        """Fail the stream with ``error`` (a limit of the door) and read nothing more."""
        self.model._fail(error, now)
        self._stop()

    def _stop(self) -> None:
        self.broken = True
        self._frames = es.Decoder(0)  # drop the buffered bytes

    def end(self, now: float) -> None:
        if not self.ended:
            self.ended = True
            self.model.end_input(now)


def _inner_events(payload: bytes) -> Iterator[Any]:
    decoder = es.Decoder()
    for headers, body in decoder.feed(payload):
        if headers.get(":message-type") != "event":
            continue
        wrapper = json.loads(body)
        if not isinstance(wrapper, dict) or not isinstance(wrapper.get("bytes"), str):
            raise ValueError('the inner message must be JSON {"bytes": "<base64>"}')
        yield json.loads(base64.b64decode(wrapper["bytes"], validate=True))
