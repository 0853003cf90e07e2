"""The worker's look tool, put together from the configuration, the backend and the frame slot."""

from __future__ import annotations

from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.vision.camera import Camera
from sonic_bridge.vision.converse import DirectConverse, SdkConverse, VisionModel
from sonic_bridge.vision.look import LookTool
from sonic_bridge.vision.slot import FrameSlot


def vision_model(backend: object) -> VisionModel | None:
    """Converse the way the backend reaches the service: its SDK client (aws, the fake via the SDK), or the
    fake's direct door; None for a backend without a vision model (loopback)."""
    client = getattr(backend, "sdk_client", None)
    if client is not None:
        return SdkConverse(client)
    converse = getattr(backend, "converse", None)
    if converse is not None:
        return DirectConverse(converse)
    return None


def make_look(config: BridgeConfig, backend: object, slot: FrameSlot | None) -> LookTool | None:
    if not config.vision.enabled:
        return None
    return LookTool(config.vision, Camera(slot, config.vision), vision_model(backend))
