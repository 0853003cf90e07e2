"""The backend interface and the one place that decides which service errors are worth a retry."""

from __future__ import annotations

from typing import Protocol

from sonic_bridge import errors
from sonic_bridge.settings import SessionSettings


class BackendError(Exception):
    """A failure of the stream, already classified: ``code`` is a stable error code."""

    def __init__(self, code: str, message: str, *, recoverable: bool, kind: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.recoverable = recoverable
        self.kind = kind  # the service's exception name, e.g. ModelTimeoutException


class Stream(Protocol):
    """One duplex stream of Nova Sonic JSON events.

    ``receive`` is called by exactly one reader task that is never cancelled (the SDK's output stream
    dies if a pending receive is cancelled); timeouts are applied around it, not to it.
    """

    async def send(self, event: str) -> None: ...

    async def receive(self) -> str | None:
        """The next output event as JSON text; None at the end of the stream; raises BackendError."""
        ...

    async def end_input(self) -> None:
        """Half-close: no more input events (after sessionEnd)."""
        ...

    async def aclose(self) -> None: ...


class Backend(Protocol):
    async def open(self, settings: SessionSettings) -> Stream: ...

    async def aclose(self) -> None: ...


_RECOVERABLE_KINDS = {
    "ModelStreamErrorException",
    "ThrottlingException",
    "InternalServerException",
    "ServiceUnavailableException",
    "ModelTimeoutException",
    "ModelNotReadyException",
    "InvalidEventBytes",
    "ChecksumMismatch",
    "ConnectionReset",
}
_RECOVERABLE_MESSAGES = (
    "InternalErrorCode=531",
    "Timed out waiting for input events",
    "System instability detected",
)


def classify(kind: str, message: str) -> BackendError:
    """Map a service or transport failure to a stable code, and say whether a reconnect can help."""
    if kind == "AccessDeniedException" or "signature does not match" in message:
        return BackendError(
            errors.ACCESS_DENIED,
            f"access denied: {message} (grant bedrock:InvokeModel"
            "WithBidirectionalStream on the model, and enable model access in the console)",
            recoverable=False,
            kind=kind,
        )
    if kind in ("ValidationException", "ResourceNotFoundException") and "model identifier" in message:
        return BackendError(
            errors.INVALID_MODEL, f"invalid model: {message} (check model_id and region)", recoverable=False, kind=kind
        )
    if kind in _RECOVERABLE_KINDS or any(m in message for m in _RECOVERABLE_MESSAGES):
        return BackendError(errors.SERVICE_ERROR, f"{kind}: {message}", recoverable=True, kind=kind)
    return BackendError(errors.SERVICE_FATAL, f"{kind}: {message}", recoverable=False, kind=kind)
