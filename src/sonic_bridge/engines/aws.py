"""AWS access both engines share, in the worker (Python >= 3.12): the credential chain (botocore's, which boto3
uses; resolved, cached and refreshed before expiry, never logged) or the fakes' fixed identity, the CRT HTTP/2
transport (every duplex stream needs it; aiohttp, the SDK's default, cannot do duplex) with an optional extra
CA, the Bedrock endpoint, and SDK/CRT failures as classified BackendErrors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

from sonic_bridge import errors
from sonic_bridge.engines.failures import BackendError, classify
from sonic_bridge.host.config import BridgeConfig

log = logging.getLogger("sonic_bridge.aws")
REFRESH_MARGIN = dt.timedelta(minutes=5)


class ChainCredentials:
    """An SDK identity resolver backed by botocore's credential chain (env, profiles, SSO, process, IMDS...), the
    chain boto3 uses; botocore alone, because boto3 adds ~140 ms of imports (s3transfer) to every worker start."""

    def __init__(self, profile: str | None, *, fake_when_none: bool = False) -> None:
        self._profile = profile or None
        self._session: Any = None  # botocore's, made (and imported, ~150 ms) only when the chain must be walked
        self._fake_when_none = fake_when_none  # the built-in fakes: a fixed identity when the chain finds none
        self._cached: Any = None
        self._refresh_at = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.source = ""

    async def get_identity(self, *, properties: Any = None) -> Any:
        from smithy_aws_core.identity import AWSCredentialsIdentity

        now = dt.datetime.now(dt.UTC)
        if self._cached is not None and now < self._refresh_at:
            return self._cached  # the SDK asks once per signed event: never resolve on the hot path
        creds = _from_environment(self._profile) or await asyncio.to_thread(self._walk_chain)
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
        frozen = creds if isinstance(creds, _EnvironmentCredentials) else \
            await asyncio.to_thread(creds.get_frozen_credentials)
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

    def _walk_chain(self) -> Any:
        if self._session is None:
            import botocore.session

            self._session = botocore.session.Session(profile=self._profile)
        return self._session.get_credentials()

    async def invalidate(self) -> None:
        self._cached = None
        self._refresh_at = dt.datetime.min.replace(tzinfo=dt.UTC)

    @property
    def expiration(self) -> dt.datetime | None:
        return self._cached.expiration if self._cached is not None else None


@dataclass(frozen=True)
class _EnvironmentCredentials:
    """The chain's first link, read without importing botocore (a worker starts ~150 ms sooner): the chain
    returns exactly these whenever both variables are set and no profile is named in the configuration."""

    access_key: str
    secret_key: str
    token: str | None
    method: str = "env"
    _expiry_time: None = None

    def get_frozen_credentials(self) -> _EnvironmentCredentials:
        return self


def _from_environment(profile: str | None) -> _EnvironmentCredentials | None:
    if profile is not None or os.environ.get("AWS_CREDENTIAL_EXPIRATION"):
        return None  # a named profile outranks the environment; expiring ones: the chain knows how to read them
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    return _EnvironmentCredentials(key, secret, os.environ.get("AWS_SESSION_TOKEN") or
                                   os.environ.get("AWS_SECURITY_TOKEN") or None)


class FakeServiceCredentials:
    """The identity the SDK signs with for the built-in fakes in process when no credentials are set up."""

    source = "the built-in fakes"
    expiration: dt.datetime | None = None

    async def get_identity(self, *, properties: Any = None) -> Any:
        from smithy_aws_core.identity import AWSCredentialsIdentity

        return AWSCredentialsIdentity(access_key_id="AKIDSONICBRIDGEFAKE", secret_access_key="fake-secret")

    async def invalidate(self) -> None:
        return None


def credentials_for(config: BridgeConfig) -> ChainCredentials:
    """the credential chain; for backend "fake" (the fakes in process check no account) the fixed identity of
    FakeServiceCredentials when the chain has nothing, so a fresh machine runs the demo and the tests."""
    return ChainCredentials(config.profile, fake_when_none=config.backend == "fake")


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

    credentials: ChainCredentials | None = None
    transport: Any = None

    def credentials_expire_at(self) -> dt.datetime | None:
        return self.credentials.expiration if self.credentials else None

    async def aclose(self) -> None:
        if self.transport is not None:
            try:
                await self.transport.close()
            except Exception as exc:
                log.debug("closing the transport: %s", exc)
