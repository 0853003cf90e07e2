"""The worker subprocess (``python -m sonic_bridge.worker``): its main loop, the outbox to the host, audio
conversion and the speaking-activity clock that the engines run with."""
