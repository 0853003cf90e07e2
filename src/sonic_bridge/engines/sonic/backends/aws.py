"""The real Nova Sonic through aws-sdk-bedrock-runtime (0.12 line, Python >= 3.12).

Every use of the Bedrock SDK's bidirectional stream lives in this module: its API broke at 0.8, 0.10 and
0.11. Credentials, the CRT transport and the error mapping are shared with the cascade (``engines.aws``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sonic_bridge import errors
from sonic_bridge.engines.aws import (
    AwsAccess,
    ChainCredentials,
    credentials_for,
    crt_transport,
    endpoint_for,
    map_exception,
)
from sonic_bridge.engines.failures import BackendError
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.settings import SessionSettings

log = logging.getLogger("sonic_bridge.aws")


class AwsStream:
    def __init__(self, stream: Any) -> None:
        from aws_sdk_bedrock_runtime.models import (
            BidirectionalInputPayloadPart,
            InvokeModelWithBidirectionalStreamInputChunk,
        )

        self._stream = stream
        self._chunk: Callable[[bytes], Any] = lambda data: InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=data)
        )
        self._output: Any = None
        self._ready = asyncio.ensure_future(self._await_output())

    async def _await_output(self) -> Any:
        try:
            return (await self._stream.await_output())[1]
        except Exception as exc:
            raise map_exception(exc) from None

    async def wait_ready(self) -> None:
        await asyncio.shield(self._ready)

    async def send(self, event: str) -> None:
        try:
            await self._stream.input_stream.send(self._chunk(event.encode()))
        except Exception as exc:
            raise map_exception(exc) from None

    async def receive(self) -> str | None:
        output = await asyncio.shield(self._ready)
        try:
            chunk = await output.receive()
        except Exception as exc:
            raise map_exception(exc) from None
        if chunk is None:
            return None
        data: bytes = chunk.value.bytes_
        return data.decode()

    async def end_input(self) -> None:
        try:
            await self._stream.input_stream.close()
        except Exception as exc:
            raise map_exception(exc) from None

    async def aclose(self) -> None:
        if not self._ready.done():
            self._ready.cancel()
        try:
            await self._stream.close()
        except Exception as exc:  # closing a broken stream may fail in many ways; none matters now
            log.debug("closing the stream: %s", map_exception(exc).message)


class AwsBackend(AwsAccess):
    def __init__(self, config: BridgeConfig, transport_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._transport_factory = transport_factory
        self._client: Any = None
        self.credentials: ChainCredentials | None = None
        self.transport: Any = None

    async def _ensure_client(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
            from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
        except ImportError as exc:
            raise BackendError(errors.BAD_CONFIGURATION, f"the AWS SDK is not installed for this worker "
                               f"({exc}); install sonic-bridge[aws] into a Python >= 3.12 and set worker_python",
                               recoverable=False, kind="ImportError") from None
        self.credentials = credentials_for(self.config)
        await self.credentials.get_identity()  # fail early, with a clear message, when there are none
        self.transport = self._transport_factory() if self._transport_factory else crt_transport(self.config.ca_file)
        sdk_config = await AsyncBedrockRuntimeConfig.resolve(
            region=self.config.region, endpoint_uri=endpoint_for(self.config), transport=self.transport,
            aws_credentials_identity_resolver=self.credentials)
        self._client = AsyncBedrockRuntimeClient(config=sdk_config)
        return self._client

    async def sdk_client(self) -> Any:
        """The SDK client of this backend (built once): the look tool's Converse shares its credentials,
        Region, endpoint and transport."""
        return await self._ensure_client()

    async def prepare(self) -> None:
        """Build the client and resolve credentials now, while the worker starts, not at the first open."""
        try:
            await self._ensure_client()
        except Exception as exc:
            raise map_exception(exc) from None

    async def open(self, settings: SessionSettings) -> AwsStream:
        try:
            from aws_sdk_bedrock_runtime.models import InvokeModelWithBidirectionalStreamOperationInput

            client = await self._ensure_client()
            stream = await client.invoke_model_with_bidirectional_stream(
                InvokeModelWithBidirectionalStreamOperationInput(model_id=settings.model_id))
        except Exception as exc:
            raise map_exception(exc) from None
        return AwsStream(stream)
