"""Door 1: an in-process HTTP transport handed to the unmodified AWS SDK (Python >= 3.12).

The SDK serialises, signs and frames every event as it would for the real service; this transport
takes the request body (signed event-stream frames) and answers with the fake Sonic's frames, with
no socket and no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sonic_bridge.fake.cascade import route
from sonic_bridge.fake.cascade_sdk import respond
from sonic_bridge.fake.converse import converse_model
from sonic_bridge.fake.direct import FakeService, scenario_for
from sonic_bridge.fake.model import FakeError
from sonic_bridge.fake.wire import InputDecoder, error_response, model_id_from_path, render
from sonic_bridge.host.config import FakeOptions


class FakeSdkTransport:
    SUPPORTS_DUPLEX_STREAMING = True

    def __init__(self, service: FakeService) -> None:
        self.service = service
        self.sessions: list[InputDecoder] = []

    def __deepcopy__(self, memo: Any) -> FakeSdkTransport:
        return self  # the SDK deep-copies its config per call; the fake must stay the same

    async def close(self) -> None:
        return None

    async def send(self, request: Any, *, request_config: Any = None) -> Any:
        from smithy_http import tuples_to_fields
        from smithy_http.aio import HTTPResponse

        loop = asyncio.get_running_loop()
        cascade = route(request.destination.path)
        if cascade is not None:  # Transcribe, ConverseStream or Polly for the cascade engine
            return await respond(self.service.cascade, cascade, request)
        vision_model = converse_model(request.destination.path)
        if vision_model is not None:  # the look tool's Converse: a plain JSON request and reply
            body = await request.body.read() if hasattr(request.body, "read") else bytes(request.body or b"")
            reply = self.service.converse.handle(vision_model, bytes(body))
            if reply.delay:
                await asyncio.sleep(reply.delay)

            async def payload() -> AsyncIterator[bytes]:
                yield reply.body

            return HTTPResponse(status=reply.status, fields=tuples_to_fields(reply.headers), body=payload(),
                                reason=None)
        try:
            model_id = model_id_from_path(request.destination.path)
            model = self.service.new_stream(model_id, loop.time())
        except FakeError as err:
            status, headers, body = error_response(err)
            return HTTPResponse(status=status, fields=tuples_to_fields(headers), body=body, reason=None)
        decoder = InputDecoder(model)
        self.sessions.append(decoder)
        kick = asyncio.Event()

        async def read_input() -> None:
            try:
                async for chunk in request.body:
                    decoder.feed(bytes(chunk), loop.time())
                    kick.set()
            finally:
                decoder.end(loop.time())
                kick.set()

        reader = asyncio.create_task(read_input())

        async def frames() -> AsyncIterator[bytes]:
            try:
                while True:
                    for item in model.pump(loop.time()):
                        data, last = render(item)
                        if data:
                            yield data
                        if last:
                            return
                    due = model.next_due()
                    kick.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(kick.wait(), None if due is None else max(0.0, due - loop.time()))
            finally:
                self.service.release()
                if not reader.done():
                    reader.cancel()

        fields = tuples_to_fields([("content-type", "application/vnd.amazon.eventstream")])
        return HTTPResponse(status=200, fields=fields, body=frames(), reason=None)


def fake_sdk_transport(options: FakeOptions) -> FakeSdkTransport:
    return FakeSdkTransport(FakeService(scenario_for(options)))
