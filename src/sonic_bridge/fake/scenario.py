"""What a fake Sonic conversation does: timings, limits, per-turn tools and faults. Loads from JSON/YAML."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

FAULTS = ("model_stream_error", "truncated_frame", "disconnect", "slow", "throttle")
LOOK_FAULTS = ("throttle", "access_denied", "unavailable", "not_ready")


@dataclass(frozen=True, slots=True)
class TurnPlan:
    tool: str | None = None  # call this tool before answering
    arguments: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None  # one of FAULTS, injected during this turn's response
    reply_text: str | None = None  # default: a deterministic sentence naming the turn
    # A worker gone bad: the fake (which runs inside the worker) takes this much memory and leaves the turn
    # unanswered, for tests of the host's memory limit (max_worker_memory_mb).
    allocate_mb: int = 0

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; choose one of {FAULTS}")
        if isinstance(self.allocate_mb, bool) or not isinstance(self.allocate_mb, int) or not 0 <= self.allocate_mb \
                <= 4096:
            raise ValueError(f"allocate_mb must be a whole number of MiB from 0 to 4096, got {self.allocate_mb!r}")


@dataclass(frozen=True, slots=True)
class LookPlan:
    """How the fake Converse answers one look (its retries get the same answer)."""

    fault: str | None = None  # one of LOOK_FAULTS: the service's error instead of an answer
    delay_ms: float = 0.0  # the model's thinking time (scaled like every duration)
    answer: str | None = None  # default: a description of the images received

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in LOOK_FAULTS:
            raise ValueError(f"unknown look fault {self.fault!r}; choose one of {LOOK_FAULTS}")
        if isinstance(self.delay_ms, bool) or not isinstance(self.delay_ms, int | float) or self.delay_ms < 0:
            raise ValueError(f"look delay_ms must be a number of milliseconds >= 0, got {self.delay_ms!r}")


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int = 0
    time_scale: float = 1.0  # multiplies every duration below
    thinking_ms: tuple[float, float] = (300.0, 700.0)
    connection_limit_s: float = 480.0  # ModelTimeoutException
    silence_limit_s: float = 175.0  # ValidationException InternalErrorCode=531
    input_timeout_s: float = 60.0  # "Timed out waiting for input events"
    max_streams: int = 20  # ThrottlingException past this many concurrent streams
    max_content_bytes: int = 1024 * 1024  # text of one content block; more is a ValidationException
    speech_threshold: float = 0.02  # RMS (full scale 1.0) above which a 10 ms frame is voice
    barge_in_ms: float = 120.0  # voice this long during a reply interrupts it
    audio_chunk_ms: float = 80.0  # reply audio per audioOutput event
    speed: float = 4.0  # reply audio is sent this many times faster than real time
    turns: tuple[TurnPlan, ...] = ()  # plans for turns 1, 2, ...; later turns answer plainly
    looks: tuple[LookPlan, ...] = ()  # plans for the fake Converse's requests 1, 2, ...; later ones answer
    # Every reply ends by naming what its stream was started with (voice, turn sensitivity, tools, tool choice,
    # temperature, system prompt, history): tests of live setting changes and replays hear them.
    reply_names_context: bool = False
    # The cascade's fakes: Transcribe streams 1, 2, ... fail with these faults after their first final result
    # (fake.transcribe.TRANSCRIBE_FAULTS; "" or null: none); Polly requests 1, 2, ... (fake.polly.POLLY_FAULTS).
    transcribe_faults: tuple[str | None, ...] = ()
    polly_faults: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {self.time_scale}")
        lo, hi = self.thinking_ms
        if not 0 <= lo <= hi:
            raise ValueError(f"thinking_ms must be [low, high] with 0 <= low <= high, got {self.thinking_ms}")
        if self.speed <= 0 or self.audio_chunk_ms <= 0:
            raise ValueError("speed and audio_chunk_ms must be positive")
        from sonic_bridge.fake.cascade_faults import check_faults

        check_faults(self.transcribe_faults, self.polly_faults)
        if not isinstance(self.max_content_bytes, int) or self.max_content_bytes < 1:
            raise ValueError(f"max_content_bytes must be a positive whole number, got {self.max_content_bytes!r}")

    def plan(self, turn: int) -> TurnPlan:
        return self.turns[turn - 1] if 0 < turn <= len(self.turns) else TurnPlan()

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Scenario:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown scenario keys {sorted(unknown)}; known: {sorted(known)}")
        data = dict(raw)
        if "thinking_ms" in data:
            data["thinking_ms"] = tuple(data["thinking_ms"])
        data["turns"] = tuple(TurnPlan(**t) for t in data.get("turns", ()))
        data["looks"] = tuple(LookPlan(**t) for t in data.get("looks", ()))
        for name in ("transcribe_faults", "polly_faults"):
            data[name] = tuple(f or None for f in data.get(name, ()))
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """The scenario in a JSON file (YAML for .yaml/.yml); every problem names the file."""
        yaml_file = str(path).endswith((".yaml", ".yml"))
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"scenario file {path} cannot be read: {exc}") from None
        try:
            if yaml_file:
                import yaml

                raw = yaml.safe_load(text)
            else:
                raw = json.loads(text)
        except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError, RecursionError
            kind = "YAML" if yaml_file else "JSON (name it .yaml or .yml for YAML)"
            detail = " ".join(str(exc).split())
            raise ValueError(f"scenario file {path} is not valid {kind}: {detail}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"scenario file {path} must hold a mapping, got {type(raw).__name__}")
        try:
            return cls.from_dict(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scenario file {path}: {exc}") from None
