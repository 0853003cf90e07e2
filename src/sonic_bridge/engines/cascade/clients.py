"""The cascade's three SDK clients (Python >= 3.12): Transcribe streaming, Bedrock Runtime, Polly.

They share what the Nova Sonic backend uses (``backends.aws``): the credential chain (botocore) resolved at start-up,
the Region, the CRT transport (with the optional extra CA; every duplex stream needs CRT) and the error
classification. ``transport_factory`` swaps the transport (the fake's in-process door).
"""

from __future__ import annotations

import logging
import os
import re
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

log = logging.getLogger("sonic_bridge.cascade")
# Failures of the cascade's services that a new stream or a retry can help with (besides backends.base's).
RECOVERABLE_KINDS = {"LimitExceededException", "InternalFailureException", "ServiceUnavailableException",
                     "ServiceFailureException", "ThrottlingException", "ModelStreamErrorException",
                     "modelStreamErrorException", "InternalServerException", "ModelNotReadyException"}
TIMED_OUT = "no new audio was received"
_SHAPE = re.compile(r"id: [\w.]+#(\w+)")


def classify(exc: BaseException) -> BackendError:
    """Any failure of the three clients as a classified BackendError (the Sonic engine's codes)."""
    error = map_exception(exc)
    unmodelled = _SHAPE.search(error.message) if error.kind == "CallError" else None
    if unmodelled is not None:  # an error the operation does not model, e.g. Polly's ThrottlingException
        error = BackendError(error.code, error.message, recoverable=error.recoverable, kind=unmodelled.group(1))
    if error.kind in RECOVERABLE_KINDS or (error.kind == "BadRequestException" and TIMED_OUT in error.message):
        return BackendError(errors.SERVICE_ERROR, error.message, recoverable=True, kind=error.kind)
    if error.kind == "AccessDeniedException" or error.code == errors.ACCESS_DENIED:
        return BackendError(errors.ACCESS_DENIED, f"access denied: {error.message} (the cascade needs "
                            "transcribe:StartStreamTranscription, bedrock:InvokeModelWithResponseStream on the Nova "
                            "model and polly:SynthesizeSpeech)", recoverable=False, kind=error.kind)
    return error


def _endpoint(explicit: str | None, env: str, default: str) -> str:
    return explicit or os.environ.get(env) or default


class CascadeClients(AwsAccess):
    """What the worker builds for engine "cascade" in place of a Nova Sonic backend."""

    def __init__(self, config: BridgeConfig, transport_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._transport_factory = transport_factory
        self.credentials: ChainCredentials | None = None
        self.transport: Any = None
        self.transcribe: Any = None
        self.bedrock: Any = None
        self.polly: Any = None

    async def prepare(self) -> None:
        """Import the SDKs, resolve credentials and build the clients now, while the worker starts."""
        try:
            from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
            from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
            from aws_sdk_polly.client import AsyncPollyClient
            from aws_sdk_polly.config import AsyncPollyConfig
            from aws_sdk_transcribe_streaming.client import AsyncTranscribeStreamingClient
            from aws_sdk_transcribe_streaming.config import AsyncTranscribeStreamingConfig
        except ImportError as exc:
            raise BackendError(errors.BAD_CONFIGURATION, f"the cascade engine needs aws-sdk-transcribe-streaming, "
                               f"aws-sdk-bedrock-runtime and aws-sdk-polly in the worker ({exc}); install "
                               "sonic-bridge[aws] into a Python >= 3.12 and set worker_python",
                               recoverable=False, kind="ImportError") from None
        config, cascade = self.config, self.config.cascade
        try:
            self.credentials = credentials_for(config)
            await self.credentials.get_identity()  # fail early, with a clear message, when there are none
            self.transport = self._transport_factory() if self._transport_factory else crt_transport(config.ca_file)
            common = {"region": config.region, "transport": self.transport,
                      "aws_credentials_identity_resolver": self.credentials}
            self.transcribe = AsyncTranscribeStreamingClient(config=await AsyncTranscribeStreamingConfig.resolve(
                endpoint_uri=_endpoint(cascade.transcribe_endpoint, "AWS_ENDPOINT_URL_TRANSCRIBE_STREAMING",
                                       f"https://transcribestreaming.{config.region}.amazonaws.com"), **common))
            self.bedrock = AsyncBedrockRuntimeClient(config=await AsyncBedrockRuntimeConfig.resolve(
                endpoint_uri=endpoint_for(config), **common))
            self.polly = AsyncPollyClient(config=await AsyncPollyConfig.resolve(
                endpoint_uri=_endpoint(cascade.polly_endpoint, "AWS_ENDPOINT_URL_POLLY",
                                       f"https://polly.{config.region}.amazonaws.com"), **common))
        except Exception as exc:
            raise classify(exc) from None

    async def sdk_client(self) -> Any:
        """The Bedrock client (what the vision helpers expect of a backend)."""
        return self.bedrock


def make_clients(config: BridgeConfig) -> CascadeClients:
    """The real services (backend "aws"), or the fakes through the in-process transport (backend "fake")."""
    if config.backend == "fake":
        from sonic_bridge.fake.sdk_transport import fake_sdk_transport

        return CascadeClients(config, transport_factory=lambda: fake_sdk_transport(config.fake))
    return CascadeClients(config)
