"""How the engines report a service failure: a classified BackendError, and the one place that decides
which failures are worth a retry (shared by the Nova Sonic and cascade engines)."""

from __future__ import annotations

from sonic_bridge import errors


class BackendError(Exception):
    """A failure of the stream, already classified: ``code`` is a stable error code."""

    def __init__(self, code: str, message: str, *, recoverable: bool, kind: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.recoverable = recoverable
        self.kind = kind  # the service's exception name, e.g. ModelTimeoutException


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
