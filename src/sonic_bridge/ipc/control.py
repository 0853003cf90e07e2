"""The control socket of a shared worker: the host hands it a session (with its file descriptors) or takes one back.

One message per datagram (``SOCK_SEQPACKET``, so a message never arrives in pieces), JSON, with the
session's file descriptors attached as ``SCM_RIGHTS`` in the order ``names`` gives. Pure: encoding and
parsing only; the sockets are the host's ``host.group`` and the worker's ``worker.group``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_MESSAGE = 4096
MAX_FDS = 8
SESSION_FDS = ("in-ring", "in-bell", "out-ring", "out-bell", "config")  # and "video-slot" with vision


class ControlError(ValueError):
    """A control message this version cannot read."""


@dataclass(frozen=True, slots=True)
class Attach:
    session: int
    names: tuple[str, ...]  # the attached descriptors, in order


@dataclass(frozen=True, slots=True)
class Detach:
    session: int  # end it now (the host closed it, or gave up waiting for it to close)


def encode(message: Attach | Detach) -> bytes:
    if isinstance(message, Attach):
        return json.dumps({"op": "attach", "session": message.session, "names": list(message.names)}).encode()
    return json.dumps({"op": "detach", "session": message.session}).encode()


def parse(data: bytes, fd_count: int) -> Attach | Detach:
    """The message, checked against the descriptors that came with it."""
    try:
        body = json.loads(data)
        op, session = body["op"], body["session"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ControlError(f"unreadable control message ({type(exc).__name__}: {exc})") from None
    if isinstance(session, bool) or not isinstance(session, int):
        raise ControlError(f"control message with a session id that is not a number: {session!r}")
    if op == "detach":
        if fd_count:
            raise ControlError(f"a detach came with {fd_count} descriptors")
        return Detach(session)
    if op != "attach":
        raise ControlError(f"unknown control operation {op!r}")
    names = body.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ControlError(f"attach of session {session} without its descriptor names")
    missing = [n for n in SESSION_FDS if n not in names]
    if missing or len(names) != fd_count:
        raise ControlError(f"attach of session {session}: names {names} for {fd_count} descriptors"
                           + (f" (missing {missing})" if missing else ""))
    return Attach(session, tuple(names))
