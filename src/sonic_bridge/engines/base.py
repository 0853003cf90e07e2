"""The one interface the worker needs of an engine, and the choice by ``BridgeConfig.engine``."""

from __future__ import annotations

from typing import Any, Protocol

from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import messages as msg
from sonic_bridge.worker.outbox import Outbox


class Engine(Protocol):
    """Host commands in (``handle``, never blocking), host events out through the outbox while ``run`` runs."""

    backend: Any  # what the worker closes at the end (a Sonic backend, the cascade's clients)

    def handle(self, command: msg.Command) -> None: ...

    async def run(self) -> None:
        """Serve until the host closes or the session fails for good (then its Error has been sent)."""
        ...

    def end_of_batch(self) -> None:
        """The worker has read every command the host had queued: audio taken in since the last call may go
        out now, together (fewer events and wake-ups per second of audio)."""
        ...

    def report_audio(self) -> None:
        """Send the tally of the host's audio frames (sent to a stream, or dropped with a reason)."""
        ...


def make_backend(config: BridgeConfig) -> object:
    """What the engine talks to: a Nova Sonic backend, or the cascade's three clients."""
    if config.engine == "cascade":
        from sonic_bridge.engines.cascade.clients import make_clients

        return make_clients(config)
    from sonic_bridge.engines.sonic.backends import make_backend as sonic_backend

    return sonic_backend(config)


def make_engine(config: BridgeConfig, backend: Any, outbox: Outbox, look: Any = None) -> Engine:
    """The engine ``config.engine`` names, around the backend ``make_backend`` built. ``look``: vision's tool
    (Nova Sonic calls it; the cascade sends its camera's newest frames with every turn instead)."""
    if config.engine == "cascade":
        from sonic_bridge.engines.cascade.pipeline import CascadeEngine

        return CascadeEngine(config, backend, outbox, camera=look.camera if look is not None else None)
    from sonic_bridge.engines.sonic.session_manager import SessionRunner

    return SessionRunner(config, backend, outbox, look=look)
