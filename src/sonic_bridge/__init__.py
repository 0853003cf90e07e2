"""sonic-bridge: a never-blocking bridge between synchronous avatar hosts and Amazon Nova Sonic."""

import importlib
from typing import TYPE_CHECKING, Any

from sonic_bridge._version import __version__ as __version__
from sonic_bridge.engines.sonic.history import Message
from sonic_bridge.events import (
    AudioOut,
    BridgeState,
    Error,
    Event,
    Interrupted,
    Look,
    Role,
    SampleFormat,
    Stage,
    StateChanged,
    TokenCounts,
    ToolCall,
    Transcript,
    TurnEnded,
    Usage,
    Warning,
)
from sonic_bridge.settings import Inference, SessionSettings, Tool

__all__ = [
    "AudioOut",
    "BridgeState",
    "Error",
    "Event",
    "Inference",
    "Interrupted",
    "Look",
    "Message",
    "Role",
    "SampleFormat",
    "SessionSettings",
    "Stage",
    "StateChanged",
    "TokenCounts",
    "Tool",
    "ToolCall",
    "Transcript",
    "TurnEnded",
    "Usage",
    "Warning",
]

# The host's classes load on first use: a worker imports this package too (every sonic_bridge module does), and
# the host facade, the pool and the group are ~40 ms of a worker's start that it never uses.
_LAZY = {
    "BridgeClosed": "sonic_bridge.host.client", "BridgeStats": "sonic_bridge.host.client",
    "SonicBridge": "sonic_bridge.host.client", "BridgeConfig": "sonic_bridge.host.config",
    "FakeOptions": "sonic_bridge.host.config", "CascadeSettings": "sonic_bridge.engines.cascade.settings",
    "VisionSettings": "sonic_bridge.vision.settings", "WorkerGroup": "sonic_bridge.host.group",
    "WorkerPool": "sonic_bridge.host.pool", "model_info": "sonic_bridge.engines.sonic.models",
    "route_to_loguru": "sonic_bridge.host.logs",
}

if TYPE_CHECKING:
    from sonic_bridge.engines.cascade.settings import CascadeSettings
    from sonic_bridge.engines.sonic.models import model_info
    from sonic_bridge.host.client import BridgeClosed, BridgeStats, SonicBridge
    from sonic_bridge.host.config import BridgeConfig, FakeOptions
    from sonic_bridge.host.group import WorkerGroup
    from sonic_bridge.host.logs import route_to_loguru
    from sonic_bridge.host.pool import WorkerPool
    from sonic_bridge.vision.settings import VisionSettings


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sonic_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ += [
    "BridgeClosed",
    "BridgeConfig",
    "BridgeStats",
    "CascadeSettings",
    "FakeOptions",
    "SonicBridge",
    "VisionSettings",
    "WorkerGroup",
    "WorkerPool",
    "model_info",
    "route_to_loguru",
]
