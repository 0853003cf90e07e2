"""sonic-bridge: a never-blocking bridge between synchronous avatar hosts and Amazon Nova Sonic."""

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

from sonic_bridge.engines.cascade.settings import CascadeSettings
from sonic_bridge.engines.sonic.models import model_info
from sonic_bridge.host.client import BridgeClosed, BridgeStats, SonicBridge
from sonic_bridge.host.config import BridgeConfig, FakeOptions
from sonic_bridge.host.logs import route_to_loguru
from sonic_bridge.host.pool import WorkerPool
from sonic_bridge.vision.settings import VisionSettings

__all__ += [
    "BridgeClosed",
    "BridgeConfig",
    "BridgeStats",
    "CascadeSettings",
    "FakeOptions",
    "SonicBridge",
    "VisionSettings",
    "WorkerPool",
    "model_info",
    "route_to_loguru",
]
