"""AWS access both engines share, in the worker (Python >= 3.12): boto3's credential chain (resolved, cached
and refreshed before expiry, never logged) or the fakes' fixed identity, the CRT HTTP/2 transport (every duplex
stream needs it; aiohttp, the SDK's default, cannot do duplex) with an optional extra CA, the Bedrock endpoint,
and SDK/CRT failures as classified BackendErrors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from typing import Any

from sonic_bridge import errors
from sonic_bridge.engines.failures import BackendError, classify
from sonic_bridge.host.config import BridgeConfig

log = logging.getLogger("sonic_bridge.aws")
REFRESH_MARGIN = dt.timedelta(minutes=5)


class Boto3Credentials:
    """An SDK identity resolver backed by boto3's credential chain (env, profiles, SSO, process, IMDS...)."""

    def __init__(self, profile: str | None, *, fake_when_none: bool = False) -> None:
        import boto3

        self._session = boto3.Session(profile_name=profile) if profile else boto3.Session()
        self._fake_when_none = fake_when_none  # the built-in fakes: a fixed identity when the chain finds none
        self._cached: Any = None
        self._refresh_at = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.source = ""

    async def get_identity(self, *, properties: Any = None) -> Any:
        from smithy_aws_core.identity import AWSCredentialsIdentity

        now = dt.datetime.now(dt.UTC)
        if self._cached is not None and now < self._refresh_at:
            return self._cached  # the SDK asks once per signed event: never resolve on the hot path
        creds = await asyncio.to_thread(self._session.get_credentials)
        if creds is None and self._fake_when_none:
            self.source = FakeServiceCredentials.source
            self._refresh_at = now + dt.timedelta(hours=1)
            self._cached = await FakeServiceCredentials().get_identity()
            log.info("no AWS credentials found: the built-in fakes take a fixed identity")
            return self._cached
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
    """The identity the SDK signs with for the built-in fakes in process when no credentials are set up."""

    source = "the built-in fakes"
    expiration: dt.datetime | None = None

    async def get_identity(self, *, properties: Any = None) -> Any:
        from smithy_aws_core.identity import AWSCredentialsIdentity

        return AWSCredentialsIdentity(access_key_id="AKIDSONICBRIDGEFAKE", secret_access_key="fake-secret")

    async def invalidate(self) -> None:
        return None


def credentials_for(config: BridgeConfig) -> Boto3Credentials:
    """boto3's chain; for backend "fake" (the fakes in process check no account) the fixed identity of
    FakeServiceCredentials when the chain has nothing, so a fresh machine runs the demo and the tests."""
    return Boto3Credentials(config.profile, fake_when_none=config.backend == "fake")


def crt_transport(ca_file: str | None) -> Any:
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


class AwsAccess:
    """What an engine's AWS side holds, whichever engine: its credentials and its transport (both closed here)."""

    credentials: Boto3Credentials | None = None
    transport: Any = None

    def credentials_expire_at(self) -> dt.datetime | None:
        return self.credentials.expiration if self.credentials else None

    async def aclose(self) -> None:
        if self.transport is not None:
            try:
                await self.transport.close()
            except Exception as exc:
                log.debug("closing the transport: %s", exc)
