"""The one configuration object of a bridge: validated once, on the host, with clear errors.

It reaches the worker as JSON (never pickled), so every field is plain data.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from sonic_bridge import models
from sonic_bridge.events import SampleFormat
from sonic_bridge.settings import SessionSettings

BACKENDS = ("fake", "aws", "loopback")
HOST_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class FakeOptions:
    """Knobs of the built-in fake Sonic (see sonic_bridge.fake)."""

    time_scale: float = 1.0  # every service duration is multiplied by this (0.01: 8 min in 4.8 s)
    seed: int = 0
    scenario: str | None = None  # path of a JSON/YAML scenario file
    via_sdk: bool = False  # run the real SDK over the in-process transport (Python >= 3.12)

    def __post_init__(self) -> None:
        if not (isinstance(self.time_scale, int | float) and 0 < self.time_scale <= 100):
            raise ValueError(f"fake.time_scale must be a number in (0, 100], got {self.time_scale!r}")
        if self.scenario is not None and not os.path.isfile(self.scenario):
            raise ValueError(f"fake.scenario file {self.scenario!r} does not exist")


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    session: SessionSettings = field(default_factory=SessionSettings)
    backend: str = "fake"
    region: str = "us-east-1"
    endpoint: str | None = None  # overrides the regional endpoint (also AWS_ENDPOINT_URL_BEDROCK_RUNTIME)
    ca_file: str | None = None  # extra CA to trust, e.g. the fake server's test CA
    profile: str | None = None  # AWS shared-config profile
    # Interpreter of the worker. Default: the host's own on Python >= 3.12, else the environment that
    # `sonic-bridge worker-env` made (sonic_bridge.launch.default_worker_env_dir()) when it exists.
    worker_python: str | None = None
    worker_env: dict[str, str] = field(default_factory=dict)  # extra environment variables for the worker
    output_sample_rate: int = 24000  # reply audio as the host wants it
    output_format: SampleFormat = SampleFormat.FLOAT32
    inbound_capacity: int = 8 * MiB  # host -> worker ring
    outbound_capacity: int = 16 * MiB  # worker -> host ring: >= 30 s of 24 kHz float32 reply audio
    max_restarts: int = 2  # worker restarts before the bridge gives up (0: close on death)
    stall_timeout: float = 1.0  # no worker heartbeat for this long: reported as stalled
    kill_stalled_after: float = 10.0  # a stalled worker is killed (and restarted) after this long
    startup_timeout: float = 60.0  # from launch until the worker serves (imports, credentials): then it is killed
    connect_timeout: float = 20.0  # stream open + first response headers
    renew_after: float = 360.0  # proactive renewal before the 8-minute connection limit
    renew_force_after: float = 30.0  # renewal waits this long at most for a turn boundary
    max_reconnects: int = 5
    fake: FakeOptions = field(default_factory=FakeOptions)
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not isinstance(self.session, SessionSettings):
            raise TypeError(f"session must be a SessionSettings, got {type(self.session).__name__}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        models.check_region(self.region)
        if self.endpoint is not None and not self.endpoint.startswith("https://"):
            raise ValueError(
                f"endpoint must be an https:// URL (the service needs HTTP/2 over TLS), got {self.endpoint!r}"
            )
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise ValueError(f"ca_file {self.ca_file!r} does not exist")
        if self.worker_python is not None and not os.access(self.worker_python, os.X_OK):
            raise ValueError(f"worker_python {self.worker_python!r} is not an executable file")
        if self.output_sample_rate not in HOST_RATES:
            raise ValueError(f"output_sample_rate must be one of {HOST_RATES}, got {self.output_sample_rate!r}")
        if not isinstance(self.output_format, SampleFormat):
            raise ValueError(f"output_format must be a SampleFormat, got {self.output_format!r}")
        for name in ("inbound_capacity", "outbound_capacity"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 64 * 1024 <= value <= 1024 * MiB:
                raise ValueError(f"{name} must be an integer from 64 KiB to 1 GiB, got {value!r}")
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValueError(f"max_restarts must be a non-negative integer, got {self.max_restarts!r}")
        if not isinstance(self.worker_env, dict) or not all(
            isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in self.worker_env.items()
        ):
            raise ValueError(f"worker_env must map variable names to string values, got {self.worker_env!r}")
        for name in ("stall_timeout", "kill_stalled_after", "startup_timeout", "connect_timeout", "renew_after",
                     "renew_force_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")

    @property
    def python(self) -> str:
        """The worker's interpreter, as the bridge will launch it (see worker_python)."""
        from sonic_bridge.launch import worker_python

        return worker_python(self.worker_python)

    def with_history(self, history: tuple[Any, ...]) -> BridgeConfig:
        return dataclasses.replace(self, session=dataclasses.replace(self.session, history=history))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SessionSettings):
                value = value.to_json()
            elif isinstance(value, FakeOptions):
                value = dataclasses.asdict(value)
            elif isinstance(value, SampleFormat):
                value = value.value
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BridgeConfig:
        data = dict(raw)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        if "session" in data:
            data["session"] = SessionSettings.from_json(data["session"])
        if "fake" in data:
            data["fake"] = FakeOptions(**data["fake"])
        if "output_format" in data:
            data["output_format"] = SampleFormat(data["output_format"])
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json())
