"""Bounded, strict JSON for everything that crosses the service or the rings.

The standard ``json`` module accepts ``NaN``/``Infinity`` (which no other JSON reader does), writes them
back out, and raises ``RecursionError`` on deep nesting. Here both directions refuse those with a
``JsonError`` (a ``ValueError``) that names what was being read or written and where the problem is.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Real service events nest about 5 levels and tool schemas rarely 20; far below any recursion limit.
MAX_DEPTH = 64
# json refuses to print integers of more digits than sys.get_int_max_str_digits() (4300 by default).
_INT_LIMIT = 10**4000


class JsonError(ValueError):
    """A value or text that is not plain, finite, bounded JSON."""


class JsonTypeError(JsonError, TypeError):
    """A value of a type JSON cannot carry (a set, bytes, an object...)."""


def _path(keys: tuple[object, ...]) -> str:
    if not keys:
        return "the top level"
    shown = "".join(f"[{k!r:.40}]" for k in keys[:6])
    return shown if len(keys) <= 6 else f"{shown}... ({len(keys)} levels down)"


def _refuse_constant(token: str) -> Any:
    raise JsonError(f"{token} is not JSON (JSON has no NaN or infinity)")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise JsonError(f"{token} is out of range for a JSON number")
    return value


def check(value: Any, *, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``JsonError`` unless ``value`` is plain JSON: finite numbers, at most ``max_depth`` deep."""
    stack: list[tuple[Any, tuple[object, ...]]] = [(value, ())]
    while stack:
        node, keys = stack.pop()
        if isinstance(node, dict | list | tuple):
            if len(keys) >= max_depth:
                raise JsonError(
                    f"{what} is nested deeper than {max_depth} levels (or refers to itself) at {_path(keys)}"
                )
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, item in items:
                if isinstance(node, dict):
                    _check_key(key, what, keys)
                stack.append((item, (*keys, key)))
        else:
            _check_scalar(node, what, keys)


def _check_key(key: object, what: str, keys: tuple[object, ...]) -> None:
    if isinstance(key, str):
        return
    if key is None or isinstance(key, bool | int | float):
        _check_scalar(key, what, keys)  # json writes these keys as strings
        return
    raise JsonTypeError(f"{what} has a {type(key).__name__} key {key!r} at {_path(keys)}; JSON keys are strings")


def _check_scalar(node: object, what: str, keys: tuple[object, ...]) -> None:
    if node is None or isinstance(node, str | bool):
        return
    if isinstance(node, int):
        if abs(node) >= _INT_LIMIT:
            raise JsonError(f"{what} holds an integer of more than 4000 digits at {_path(keys)}")
        return
    if isinstance(node, float):
        if not math.isfinite(node):
            raise JsonError(
                f"{what} holds {node!r} at {_path(keys)}; JSON has no NaN or infinity (send null or a string)"
            )
        return
    raise JsonTypeError(
        f"{what} holds a {type(node).__name__} at {_path(keys)}, which JSON cannot carry; "
        "convert it to a string, number, bool, None, list or dict"
    )


def loads(text: str | bytes | bytearray, *, what: str) -> Any:
    """Parse JSON text; ``JsonError`` if it is not valid, finite or shallow enough."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise JsonError(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except JsonError as exc:
        raise JsonError(f"{what} is not valid JSON: {exc}") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise JsonError(f"{what} is not valid JSON: {exc}") from None
    check(value, what=what)
    return value


def dumps(value: Any, *, what: str, sort_keys: bool = False, compact: bool = False) -> str:
    """JSON text of ``value``; ``JsonError`` (``JsonTypeError`` for a wrong type) instead of a bad token."""
    check(value, what=what)
    separators = (",", ":") if compact else None
    try:
        return json.dumps(value, allow_nan=False, sort_keys=sort_keys, separators=separators)
    except (TypeError, ValueError) as exc:  # e.g. sort_keys over keys of mixed types
        raise JsonError(f"{what} cannot be written as JSON: {exc}") from None
