"""The Nova Sonic backend interface: a duplex stream of JSON events (the failures: ``engines.failures``)."""

from __future__ import annotations

from typing import Protocol

from sonic_bridge.settings import SessionSettings


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




