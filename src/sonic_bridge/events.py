"""The values a host receives from the bridge: immutable, typed, cheap to pattern-match.

Audio travels as raw PCM bytes plus its format, so an event is hashable and compares by value;
``AudioOut.samples()`` gives a read-only numpy view without copying.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt


class Role(enum.Enum):
    USER = "USER"
    ASSISTANT = "ASSISTANT"


class Stage(enum.Enum):
    """Nova Sonic's generation stage: planned speech (SPECULATIVE) or what was really said (FINAL)."""

    SPECULATIVE = "SPECULATIVE"
    FINAL = "FINAL"


class SampleFormat(enum.Enum):
    INT16 = "int16"
    FLOAT32 = "float32"

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.int16) if self is SampleFormat.INT16 else np.dtype(np.float32)

    @property
    def width(self) -> int:
        return 2 if self is SampleFormat.INT16 else 4


class BridgeState(enum.Enum):
    STARTING = "starting"
    CONNECTING = "connecting"
    READY = "ready"
    RENEWING = "renewing"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class AudioOut:
    """Reply audio in the host's chosen output format (mono), with the caption it carries.

    ``text`` holds the reply's words estimated to start in this chunk (Nova Sonic has no word timestamps:
    see ``engines.sonic.captions``): show it when the chunk starts playing, and the words on screen follow the
    voice. Concatenated in order, a response's chunks give its spoken text, ending where an interruption cut
    the audio. ``text_offset`` is where ``text`` starts in that text (its characters before this chunk).
    """

    pcm: bytes
    sample_rate: int
    sample_format: SampleFormat
    response_id: str
    text: str = ""
    text_offset: int = 0

    def samples(self) -> npt.NDArray[Any]:
        """A read-only 1-D array over ``pcm`` (no copy)."""
        return np.frombuffer(self.pcm, dtype=self.sample_format.dtype)

    @property
    def duration(self) -> float:
        return len(self.pcm) / (self.sample_format.width * self.sample_rate)


@dataclass(frozen=True, slots=True)
class Transcript:
    role: Role
    stage: Stage
    text: str
    turn_id: int


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    tool_use_id: str
    arguments: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The user barged in: the reply audio of ``response_id`` must stop playing."""

    response_id: str


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The assistant finished (END_TURN) or was cut off (INTERRUPTED)."""

    stop_reason: str
    response_id: str


@dataclass(frozen=True, slots=True)
class TokenCounts:
    input_speech: int = 0
    input_text: int = 0
    output_speech: int = 0
    output_text: int = 0

    @property
    def total(self) -> int:
        return self.input_speech + self.input_text + self.output_speech + self.output_text


@dataclass(frozen=True, slots=True)
class Usage:
    delta: TokenCounts
    total: TokenCounts


# StateChanged(READY, SETTINGS_UPDATED): the stream that serves from now on has update_session's settings.
SETTINGS_UPDATED = "settings updated"


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: BridgeState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Error:
    """``code`` is stable (see ``sonic_bridge.errors``); ``recoverable`` says whether the bridge goes on."""

    code: str
    message: str
    recoverable: bool


@dataclass(frozen=True, slots=True)
class Warning:
    """Something was lost or ignored but the session goes on (drops, unknown service events)."""

    code: str
    message: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class Look:
    """The avatar looked through the camera: the built-in look tool, answered by the worker itself.

    ``frame_ages`` are the seconds between each frame's capture and the look, oldest first (empty when no
    frame was sent). ``answer`` is what the vision model said; when the look failed it is empty and
    ``error`` says why (the model was told the camera is unavailable, and a Warning follows).
    """

    tool_use_id: str
    question: str
    model_id: str
    frame_ages: tuple[float, ...]
    latency: float  # seconds the vision model took (0 when it was not asked)
    answer: str
    error: str = ""


Event: TypeAlias = (
    AudioOut | Transcript | ToolCall | Interrupted | TurnEnded | Usage | StateChanged | Error | Warning | Look
)
