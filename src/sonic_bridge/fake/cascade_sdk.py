"""The cascade's fakes behind the in-process SDK transport (door 1): the SDK's request in, its response out.

Transcribe reads the signed request body as it arrives and streams results back; ConverseStream streams
its scripted events on their schedule; Polly answers its audio in one body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from sonic_bridge.fake import converse_stream, transcribe
from sonic_bridge.fake.cascade import CONVERSE_STREAM, TRANSCRIBE, FakeCascade, error_headers
from sonic_bridge.fake.converse import Reply
from sonic_bridge.fake.model import FakeError, Output

AUDIO_PIECE = 16 * 1024  # Polly's body arrives in pieces, as from a socket


async def respond(cascade: FakeCascade, kind: str, request: Any) -> Any:
    from smithy_http import tuples_to_fields
    from smithy_http.aio import HTTPResponse

    loop = asyncio.get_running_loop()
    if kind == TRANSCRIBE:
        request_headers = {f.name.lower(): ",".join(f.values) for f in request.fields}
        try:
            model = cascade.open_transcribe(request_headers, loop.time())
        except FakeError as err:
            status, headers, body = error_headers(err)
            return HTTPResponse(status=status, fields=tuples_to_fields(headers), body=_once(body), reason=None)
        return HTTPResponse(status=200, fields=tuples_to_fields(model.response_headers()),
                            body=_transcribe_output(cascade, model, request.body), reason=None)
    body = await request.body.read() if hasattr(request.body, "read") else bytes(request.body or b"")
    if kind == CONVERSE_STREAM:
        model_id = converse_stream.converse_stream_model(request.destination.path) or ""
        reply = cascade.converse.handle(model_id, bytes(body), cascade.thinking())
        if reply.error is not None:
            return _plain(reply.error)
        script = converse_stream.Script(reply.script, loop.time())
        fields = tuples_to_fields([("content-type", "application/vnd.amazon.eventstream")])
        return HTTPResponse(status=200, fields=fields, body=_paced(script, converse_stream.render), reason=None)
    return _plain(cascade.polly.handle(bytes(body)))


def _plain(reply: Reply) -> Any:
    from smithy_http import tuples_to_fields
    from smithy_http.aio import HTTPResponse

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(reply.body), AUDIO_PIECE):
            yield reply.body[i : i + AUDIO_PIECE]

    return HTTPResponse(status=reply.status, fields=tuples_to_fields(reply.headers), body=pieces(), reason=None)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _paced(model: Any, render: Callable[[Output], tuple[bytes, bool]],
                 kick: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """A model's output frames as they fall due (``kick``: new input may have made some due)."""
    loop = asyncio.get_running_loop()
    kick = kick or asyncio.Event()
    while True:
        for item in model.pump(loop.time()):
            data, last = render(item)
            if data:
                yield data
            if last:
                return
        due = model.next_due()
        if due is None and model.ended:
            return
        kick.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(kick.wait(), None if due is None else max(0.0, due - loop.time()))


async def _transcribe_output(cascade: FakeCascade, model: transcribe.FakeTranscribe,
                             body: Any) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    decoder = transcribe.TranscribeInput(model)
    kick = asyncio.Event()

    async def read_input() -> None:
        try:
            async for chunk in body:
                decoder.feed(bytes(chunk), loop.time())
                kick.set()
        finally:
            decoder.end(loop.time())
            kick.set()

    reader = asyncio.create_task(read_input())
    try:
        async for frame in _paced(model, transcribe.render, kick):
            yield frame
    finally:
        cascade.release_transcribe()
        if not reader.done():
            reader.cancel()
