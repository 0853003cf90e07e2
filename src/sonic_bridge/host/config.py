"""The one configuration object of a bridge: validated once, on the host, with clear errors.

It reaches the worker as JSON (never pickled), so every field is plain data.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from sonic_bridge import checks
from sonic_bridge.engines.cascade.settings import CascadeSettings
from sonic_bridge.engines.sonic import models
from sonic_bridge.events import SampleFormat
from sonic_bridge.settings import SessionSettings
from sonic_bridge.vision.settings import VisionSettings

BACKENDS = ("fake", "aws", "loopback")
# sonic: Nova Sonic speech to speech; cascade: Transcribe -> Nova (ConverseStream) -> Polly (Python >= 3.12 SDKs).
ENGINES = ("sonic", "cascade")
HOST_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
MiB = 1 << 20
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Allowed range of each duration, in seconds. The worker beats every 0.1 s, so a shorter stall limit
# reports stalls that are not; the service ends every connection after 8 minutes, so a later renewal
# never happens; a sub-second renewal or a timeout of microseconds only loops.
SECONDS = {
    "stall_timeout": (0.5, 3600.0),
    "kill_stalled_after": (1.0, 3600.0),
    "startup_timeout": (1.0, 3600.0),
    "connect_timeout": (0.5, 600.0),
    "renew_after": (1.0, 480.0),
    "renew_force_after": (0.1, 480.0),
}
COUNTS = {"max_restarts": (0, 100), "max_reconnects": (0, 100)}
# Phrased as an instruction and sent only in silence, as the Nova 2.5 prompting guide asks of a filler.
TOOL_FILLER_TEXT = (
    "The tool you called is still running. In one short sentence, tell the user you are still working on it. "
    "Do not call the tool again."
)


@dataclass(frozen=True, slots=True)
class FakeOptions:
    """Knobs of the built-in fake Sonic (see sonic_bridge.fake)."""

    time_scale: float = 1.0  # every service duration is multiplied by this (0.01: 8 min in 4.8 s)
    seed: int = 0
    scenario: str | None = None  # path of a JSON/YAML scenario file
    via_sdk: bool = False  # run the real SDK over the in-process transport (Python >= 3.12)

    def __post_init__(self) -> None:
        # Below 0.01 the fake's 8-minute limit falls under 5 s and its silence limit under 2 s: every
        # stream ends before a turn can, and the bridge only reconnects.
        checks.number("fake.time_scale", self.time_scale, 0.01, 100.0, " (0.01: the 8-minute limit in 4.8 s)")
        checks.integer("fake.seed", self.seed, 0, 2**63 - 1)
        if not isinstance(self.via_sdk, bool):
            raise ValueError(f"fake.via_sdk must be True or False, got {checks.show(self.via_sdk)}")
        if self.scenario is not None:
            object.__setattr__(self, "scenario", checks.path("fake.scenario", self.scenario))
            checks.existing_file("fake.scenario", self.scenario, what="a scenario file",
                                 fix="give the path of a JSON or YAML scenario file")


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    session: SessionSettings = field(default_factory=SessionSettings)
    backend: str = "fake"
    region: str = "us-east-1"
    endpoint: str | None = None  # overrides the regional endpoint (also AWS_ENDPOINT_URL_BEDROCK_RUNTIME)
    ca_file: str | None = None  # extra CA to trust, e.g. the fake server's test CA
    profile: str | None = None  # AWS shared-config profile
    # Interpreter of the worker. Default: the host's own on Python >= 3.12, else the environment that
    # `sonic-bridge worker-env` made (sonic_bridge.host.launch.default_worker_env_dir()) when it exists.
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
    # A host tool result that has not come after this many seconds: once per call, when neither the user nor
    # the model is speaking, the model gets tool_filler_text as typed text (Nova 2 and later). None: off.
    tool_filler_after: float | None = 2.5
    tool_filler_text: str = TOOL_FILLER_TEXT
    # Supervision: a worker over a limit is killed and restarted with the conversation replayed, as after a
    # crash, and the host gets an Error (code worker_over_limit) naming the limit. None: no limit.
    max_worker_memory_mb: int | None = None  # resident memory (RSS), sampled at most once a second
    max_worker_cpu: float | None = None  # CPU cores, averaged over worker_cpu_window once the worker serves
    worker_cpu_window: float = 30.0
    fake: FakeOptions = field(default_factory=FakeOptions)
    vision: VisionSettings = field(default_factory=VisionSettings)  # camera frames and the look tool
    engine: str = "sonic"  # what answers: one of ENGINES; the host API and events are the same for both
    cascade: CascadeSettings = field(default_factory=CascadeSettings)  # engine "cascade": its stages
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not isinstance(self.session, SessionSettings):
            raise ValueError(f"session must be a SessionSettings, got {checks.show(self.session)}")
        if not isinstance(self.fake, FakeOptions):
            raise ValueError(f"fake must be a FakeOptions, got {checks.show(self.fake)}")
        self._check_vision()
        checks.one_of("backend", self.backend, BACKENDS)
        self._check_engine()
        models.check_region(self.region)
        self._check_endpoint()
        if self.profile is not None:
            checks.text("profile", self.profile, max_bytes=256)
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", checks.path("ca_file", self.ca_file))
            checks.pem_certificates("ca_file", self.ca_file)
        if self.worker_python is not None:
            object.__setattr__(self, "worker_python", checks.path("worker_python", self.worker_python))
            checks.executable(
                "worker_python", self.worker_python,
                fix="give the path of a Python >= 3.12 interpreter that has sonic-bridge installed, "
                "e.g. /path/to/venv/bin/python",
            )
        checks.one_of("output_sample_rate", self.output_sample_rate, HOST_RATES)
        if not isinstance(self.output_format, SampleFormat):
            raise ValueError(f"output_format must be a SampleFormat, got {checks.show(self.output_format)}")
        for name in ("inbound_capacity", "outbound_capacity"):
            checks.integer(name, getattr(self, name), 64 * 1024, 1024 * MiB, " bytes (64 KiB to 1 GiB)")
        for name, (low, high) in COUNTS.items():
            checks.integer(name, getattr(self, name), low, high)
        if not isinstance(self.worker_env, dict):
            raise ValueError(f"worker_env must map variable names to string values, got {checks.show(self.worker_env)}")
        for key, val in self.worker_env.items():
            # Name the entry, never its value: worker_env may carry credentials.
            if not (isinstance(key, str) and key and "=" not in key and "\0" not in key):
                raise ValueError(f"worker_env keys must be variable names, got {checks.show(key)}")
            if not isinstance(val, str) or "\0" in val:
                raise ValueError(f"worker_env[{key!r}] must be a string without NUL, got a {type(val).__name__}")
        for name, (low_s, high_s) in SECONDS.items():
            checks.number(name, getattr(self, name), low_s, high_s, " seconds")
        checks.one_of("log_level", self.log_level, LOG_LEVELS)
        if self.tool_filler_after is not None:
            checks.number("tool_filler_after", self.tool_filler_after, 0.2, 300.0, " seconds (None: no filler)")
        checks.text("tool_filler_text", self.tool_filler_text, max_bytes=2000)
        if self.max_worker_memory_mb is not None:
            checks.integer("max_worker_memory_mb", self.max_worker_memory_mb, 64, 1 << 20, " MiB (None: no limit)")
        if self.max_worker_cpu is not None:
            checks.number("max_worker_cpu", self.max_worker_cpu, 0.05, 1024.0, " cores (None: no limit)")
        checks.number("worker_cpu_window", self.worker_cpu_window, 1.0, 3600.0, " seconds")
        info = self.session.model
        if self.backend == "aws" and info.match is models.Match.UNRECOGNISED:
            # The service answers such an id only with a ValidationException once the stream opens.
            raise ValueError(f"{info.problem}. The aws backend refuses it: correct session.model_id")

    def _check_vision(self) -> None:
        if not isinstance(self.vision, VisionSettings):
            raise ValueError(f"vision must be a VisionSettings, got {checks.show(self.vision)}")
        if not self.vision.enabled:
            return
        names = [t.name for t in self.session.tools]
        if self.vision.tool_name in names:
            raise ValueError(f"vision.tool_name {self.vision.tool_name!r} is also the name of a session tool "
                             f"{names}: rename one of them")
        from sonic_bridge.vision.look import session_with_look

        try:  # the session as the worker will start it: prompt size, tool count
            session_with_look(self.session, self.vision)
        except ValueError as exc:
            raise ValueError(f"with vision enabled: {exc}") from None

    def _check_engine(self) -> None:
        checks.one_of("engine", self.engine, ENGINES)
        if not isinstance(self.cascade, CascadeSettings):
            raise ValueError(f"cascade must be a CascadeSettings, got {checks.show(self.cascade)}")
        if self.engine == "cascade" and self.backend == "loopback":
            raise ValueError("engine 'cascade' needs backend 'aws' or 'fake' (the loopback backend only echoes "
                             "Nova Sonic events)")

    def _check_endpoint(self) -> None:
        if self.endpoint is None:
            return
        why = "an https:// URL with a host name (the service needs HTTP/2 over TLS)"
        if not isinstance(self.endpoint, str):
            raise ValueError(f"endpoint must be {why}, got {checks.show(self.endpoint)}")
        try:
            parts = urllib.parse.urlsplit(self.endpoint)
            _ = parts.port  # raises on a port that is not a number from 0 to 65535
        except ValueError as exc:
            raise ValueError(f"endpoint must be {why}, got {self.endpoint!r:.200} ({exc})") from None
        if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in self.endpoint):
            raise ValueError(f"endpoint must be {why}, got {self.endpoint!r:.200}")

    @property
    def python(self) -> str:
        """The worker's interpreter, as the bridge will launch it (see worker_python)."""
        from sonic_bridge.host.launch import worker_python

        return worker_python(self.worker_python)

    def with_history(self, history: tuple[Any, ...]) -> BridgeConfig:
        return dataclasses.replace(self, session=dataclasses.replace(self.session, history=history))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SessionSettings | VisionSettings | CascadeSettings):
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
        if "vision" in data:
            data["vision"] = VisionSettings.from_json(data["vision"])
        if "cascade" in data:
            data["cascade"] = CascadeSettings.from_json(data["cascade"])
        if "fake" in data:
            data["fake"] = FakeOptions(**data["fake"])
        if "output_format" in data:
            data["output_format"] = SampleFormat(data["output_format"])
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json())
