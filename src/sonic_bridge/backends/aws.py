"""The real Nova Sonic through aws-sdk-bedrock-runtime (0.12 line, Python >= 3.12).

Every use of the SDK lives in this module: its API broke at 0.8, 0.10 and 0.11. The transport is
always CRT HTTP/2 (the 0.12 default, aiohttp, cannot do duplex). Credentials come from boto3's chain,
resolved here in the worker, cached and refreshed before they expire, never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Callable
from typing import Any

from sonic_bridge import errors
from sonic_bridge.backends.base import BackendError, classify
from sonic_bridge.config import BridgeConfig
from sonic_bridge.settings import SessionSettings

log = logging.getLogger("sonic_bridge.aws")
REFRESH_MARGIN = dt.timedelta(minutes=5)


class Boto3Credentials:
    """An SDK identity resolver backed by boto3's credential chain (env, profiles, SSO, process, IMDS...)."""

    def __init__(self, profile: str | None) -> None:
        import boto3

        self._session = boto3.Session(profile_name=profile) if profile else boto3.Session()
        self._cached: Any = None
        self._refresh_at = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.source = ""

    async def get_identity(self, *, properties: Any = None) -> Any:
        from smithy_aws_core.identity import AWSCredentialsIdentity

        now = dt.datetime.now(dt.UTC)
        if self._cached is not None and now < self._refresh_at:
            return self._cached  # the SDK asks once per signed event: never resolve on the hot path
        creds = await asyncio.to_thread(self._session.get_credentials)
        if creds is None:
            raise BackendError(errors.NO_CREDENTIALS, "no AWS credentials found: set AWS_ACCESS_KEY_ID/"
                               "AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE or the profile setting), SSO, or an "
                               "instance role", recoverable=False, kind="NoCredentials")
        frozen = await asyncio.to_thread(creds.get_frozen_credentials)
        expiry = getattr(creds, "_expiry_time", None)
        self.source = str(getattr(creds, "method", "") or "unknown")
        if expiry is None:
            self._refresh_at = now + dt.timedelta(hours=1)
        else:
            left = expiry.astimezone(dt.UTC) - now
            # Refresh ahead of expiry; credentials that are already close to it are kept a little while
            # (the session manager recycles the stream before they expire).
            self._refresh_at = now + max(left - REFRESH_MARGIN, min(left / 2, dt.timedelta(seconds=60)))
        self._cached = AWSCredentialsIdentity(access_key_id=frozen.access_key, secret_access_key=frozen.secret_key,
                                              session_token=frozen.token,
                                              expiration=expiry.astimezone(dt.UTC) if expiry else None)
        log.info("using AWS credentials from %s%s", self.source,
                 f", expiring {expiry:%H:%M:%S}" if expiry else "")
        return self._cached

    async def invalidate(self) -> None:
        self._cached = None
        self._refresh_at = dt.datetime.min.replace(tzinfo=dt.UTC)

    @property
    def expiration(self) -> dt.datetime | None:
        return self._cached.expiration if self._cached is not None else None


class FakeServiceCredentials:
    """The identity the SDK signs with when it talks to the built-in fakes in process (backend "fake"): they
    check no account, so a fresh machine without AWS credentials runs the demo and the tests."""

    source = "the built-in fakes"
    expiration: dt.datetime | None = None

    async def get_identity(self, *, properties: Any = None) -> Any:
        from smithy_aws_core.identity import AWSCredentialsIdentity

        return AWSCredentialsIdentity(access_key_id="AKIDSONICBRIDGEFAKE", secret_access_key="fake-secret")

    async def invalidate(self) -> None:
        return None


def credentials_for(config: BridgeConfig) -> Boto3Credentials | FakeServiceCredentials:
    """boto3's chain for the real services; the fakes' fixed identity for backend "fake"."""
    return FakeServiceCredentials() if config.backend == "fake" else Boto3Credentials(config.profile)


def _crt_transport(ca_file: str | None) -> Any:
    from awscrt import io as crt_io
    from smithy_http.aio.crt import AWSCRTHTTPClient

    if ca_file is None:
        return AWSCRTHTTPClient()

    class TrustingCRTClient(AWSCRTHTTPClient):
        """The stock client with an extra CA to trust (the client has no setting for it)."""

        def __init__(self) -> None:
            super().__init__()
            options = crt_io.TlsContextOptions()
            options.override_default_trust_store_from_path(ca_filepath=ca_file)
            self._tls_ctx = crt_io.ClientTlsContext(options)

        def __deepcopy__(self, memo: Any) -> TrustingCRTClient:
            return self

    return TrustingCRTClient()


def endpoint_for(config: BridgeConfig) -> str:
    return (config.endpoint or os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
            or f"https://bedrock-runtime.{config.region}.amazonaws.com")


def map_exception(exc: BaseException) -> BackendError:
    """Any SDK, CRT or transport failure as a classified BackendError."""
    if isinstance(exc, BackendError):
        return exc
    kind = type(exc).__name__
    message = str(getattr(exc, "message", "") or exc)
    if "TLS" in message or "Certificate" in message:
        return BackendError(errors.TLS_FAILURE, f"TLS failed: {message} (check the endpoint and the CA file)",
                            recoverable=False, kind=kind)
    if "SOCKET" in message or "DNS" in message or "CONNECTION_REFUSED" in message or "Connection refused" in message:
        return BackendError(errors.ENDPOINT_UNREACHABLE, f"cannot reach the endpoint: {message}",
                            recoverable=True, kind=kind)
    if isinstance(exc, OSError) or kind in ("InvalidStateError", "AwsCrtError"):
        return classify("ConnectionReset", message)
    return classify(kind, message)


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


class AwsBackend:
    def __init__(self, config: BridgeConfig, transport_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._transport_factory = transport_factory
        self._client: Any = None
        self.credentials: Boto3Credentials | FakeServiceCredentials | None = None
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
        self.transport = self._transport_factory() if self._transport_factory else _crt_transport(self.config.ca_file)
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

    def credentials_expire_at(self) -> dt.datetime | None:
        return self.credentials.expiration if self.credentials else None

    async def aclose(self) -> None:
        if self.transport is not None:
            try:
                await self.transport.close()
            except Exception as exc:
                log.debug("closing the transport: %s", exc)
