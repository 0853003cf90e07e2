"""The unmodified AWS SDK against the fake Sonic's in-process transport, driven from a test."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from sonic_bridge.fake.direct import FakeService
from sonic_bridge.fake.scenario import Scenario
from sonic_bridge.fake.sdk_transport import FakeSdkTransport


async def sdk_client(transport: Any, endpoint: str = "https://fake.invalid") -> Any:
    from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
    from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
    from smithy_aws_core.identity import AWSCredentialsIdentity, StaticCredentialsResolver

    creds = StaticCredentialsResolver(AWSCredentialsIdentity(access_key_id="AKIDFAKE", secret_access_key="secret"))
    config = await AsyncBedrockRuntimeConfig.resolve(region="us-east-1", endpoint_uri=endpoint,
                                                     transport=transport, aws_credentials_identity_resolver=creds)
    return AsyncBedrockRuntimeClient(config=config)


class SdkConversation:
    """One stream: send JSON events, collect every output event or the exception that ended it."""

    def __init__(self, scenario: Scenario | None, model_id: str = "amazon.nova-2-sonic-v1:0",
                 endpoint: str | None = None, ca_file: str | None = None) -> None:
        """In process with a scenario, or over TLS to a running fake server (endpoint and CA)."""
        if endpoint is None:
            self.service = FakeService(scenario or Scenario())
            self.transport: Any = FakeSdkTransport(self.service)
        else:
            from sonic_bridge.engines.aws import crt_transport

            self.transport = crt_transport(ca_file)
        self.endpoint = endpoint or "https://fake.invalid"
        self.model_id = model_id
        self.outputs: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.ended = asyncio.Event()
        self.arrived = asyncio.Event()

    async def __aenter__(self) -> SdkConversation:
        from aws_sdk_bedrock_runtime.models import InvokeModelWithBidirectionalStreamOperationInput

        self.client = await sdk_client(self.transport, self.endpoint)
        self.stream = await self.client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id=self.model_id))
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            _, output = await self.stream.await_output()
            while (chunk := await output.receive()) is not None:
                self.outputs.append(json.loads(chunk.value.bytes_))
                self.arrived.set()
        except Exception as exc:
            self.error = exc
        finally:
            self.ended.set()
            self.arrived.set()

    async def send(self, events: list[dict[str, Any]]) -> None:
        from aws_sdk_bedrock_runtime.models import (
            BidirectionalInputPayloadPart,
            InvokeModelWithBidirectionalStreamInputChunk,
        )

        for event in events:
            await self.stream.input_stream.send(InvokeModelWithBidirectionalStreamInputChunk(
                value=BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode())))

    async def wait_for(self, name: str, count: int = 1, timeout: float = 10.0) -> None:
        async def until() -> None:
            while sum(name in o["event"] for o in self.outputs) < count and not self.ended.is_set():
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(until(), timeout)

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stream.input_stream.close(), 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.reader), 3)
        if not self.reader.done():
            self.reader.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.transport.close(), 2)
