"""Range checks for configuration fields: every refusal names the field, the value and what is allowed."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

MAX_CA_BYTES = 10 << 20
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def show(value: object) -> str:
    """A value as an error message shows it: short, and bools called bools (True is not 1 here)."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    if isinstance(value, bool):
        return f"{text} (a bool)"
    if not isinstance(value, int | float | str | type(None)):
        return f"{text} (a {type(value).__name__})"
    return text


def number(name: str, value: Any, low: float, high: float, unit: str = "") -> float:
    """A finite real number in [low, high] (bools refused: ``True`` is not a duration)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}{unit}, got {show(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}{unit}, got {show(value)}")
    return float(value)


def integer(name: str, value: Any, low: int, high: int, unit: str = "") -> int:
    """A whole number in [low, high] (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}{unit}, got {show(value)}")
    return value


def one_of(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """``value`` is one of ``allowed`` and of the same type (16000.0 is not the rate 16000)."""
    if not any(type(value) is type(option) and value == option for option in allowed):
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {show(value)}")


def text(name: str, value: Any, *, max_bytes: int, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        kind = "a string" if empty else "a non-empty string"
        raise ValueError(f"{name} must be {kind}, got {show(value)}")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ValueError(f"{name} is {size} bytes long; at most {max_bytes} bytes are allowed")
    return value


def path(name: str, value: Any) -> str:
    """A path given as str or os.PathLike, as the str that travels to the worker."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a file path (a string), got {show(value)}")
    return value


def existing_file(name: str, value: str, *, what: str, fix: str) -> None:
    """``value`` names a regular file; otherwise an error saying what it is instead and the fix."""
    if not os.path.exists(value):
        raise ValueError(f"{name} {value!r} does not exist; {fix}")
    if os.path.isdir(value):
        raise ValueError(f"{name} {value!r} is a directory, not {what}; {fix}")
    if not os.path.isfile(value):
        raise ValueError(f"{name} {value!r} is not a regular file; {fix}")


def pem_certificates(name: str, value: str) -> None:
    """The file holds at least one PEM certificate that OpenSSL can load (checked now, on the host,
    instead of the SDK's bare AWS_ERROR_INVALID_ARGUMENT when the first stream opens)."""
    fix = (
        "give the CA certificate in PEM form (a '-----BEGIN CERTIFICATE-----' block), e.g. the ca.pem "
        "that `sonic-bridge fake-server` prints"
    )
    existing_file(name, value, what="a certificate file", fix=fix)
    try:
        with open(value, "rb") as f:
            data = f.read(MAX_CA_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{name} {value!r} cannot be read ({exc.strerror}); {fix}") from None
    if len(data) > MAX_CA_BYTES:
        raise ValueError(f"{name} {value!r} is larger than {MAX_CA_BYTES >> 20} MiB; {fix}")
    if PEM_CERTIFICATE not in data:
        if b"PRIVATE KEY-----" in data:
            why = "holds a private key, not a certificate"
        elif data[:1] == b"\x30":
            why = "looks like a DER certificate (convert it: openssl x509 -inform der -in FILE -out ca.pem)"
        else:
            why = "holds no PEM certificate"
        raise ValueError(f"{name} {value!r} {why}; {fix}")
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{name} {value!r} holds a certificate block that cannot be read ({exc}); {fix}") from None


def executable(name: str, value: str, *, fix: str) -> None:
    if not os.path.exists(value):
        why = "it does not exist"
    elif os.path.isdir(value):
        why = "it is a directory"
    elif not os.path.isfile(value):
        why = "it is not a regular file"
    elif not os.access(value, os.X_OK):
        why = "it lacks the execute permission"
    else:
        return
    raise ValueError(f"{name} {value!r} is not an executable file: {why}; {fix}")
