"""The ``sonic-bridge`` command: demo, doctor, fake-server, worker-env, bench."""

from sonic_bridge.cli.main import main

__all__ = ["main"]
