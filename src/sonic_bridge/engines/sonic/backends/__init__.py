"""Backends: where the JSON events of a session go. Each opens duplex streams behind one interface."""

from __future__ import annotations

from sonic_bridge.engines.failures import BackendError, classify
from sonic_bridge.engines.sonic.backends.base import Backend, Stream

__all__ = ["Backend", "BackendError", "Stream", "classify", "make_backend"]


def make_backend(config: object) -> Backend:
    """The backend a worker configuration asks for. Imports lazily: only 'aws' needs the SDK."""
    from sonic_bridge.host.config import BridgeConfig

    assert isinstance(config, BridgeConfig)
    if config.backend == "loopback":
        from sonic_bridge.engines.sonic.backends.loopback import LoopbackBackend

        return LoopbackBackend()
    if config.backend == "fake":
        if config.fake.via_sdk:
            from sonic_bridge.engines.sonic.backends.aws import AwsBackend
            from sonic_bridge.fake.sdk_transport import fake_sdk_transport

            return AwsBackend(config, transport_factory=lambda: fake_sdk_transport(config.fake))
        from sonic_bridge.fake.direct import FakeDirectBackend

        return FakeDirectBackend(config.fake)
    from sonic_bridge.engines.sonic.backends.aws import AwsBackend

    return AwsBackend(config)
