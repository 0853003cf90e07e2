"""What crosses the rings besides host events: the host's commands and the worker's log records."""

from __future__ import annotations

from dataclasses import dataclass

from sonic_bridge.events import Event, SampleFormat


@dataclass(frozen=True, slots=True)
class AudioIn:
    """User audio in the host's own format; the worker converts it to the service's."""

    pcm: bytes
    sample_rate: int
    sample_format: SampleFormat
    seq: int  # per-bridge frame counter, so every pushed frame can be accounted for


@dataclass(frozen=True, slots=True)
class TextIn:
    text: str


@dataclass(frozen=True, slots=True)
class ToolResultIn:
    tool_use_id: str
    content: str


@dataclass(frozen=True, slots=True)
class SettingsIn:
    """New session settings (SessionSettings JSON; its history is ignored): the worker applies them by a
    renewal at the next turn boundary and says so with StateChanged(READY, events.SETTINGS_UPDATED)."""

    session_json: str


@dataclass(frozen=True, slots=True)
class CloseIn:
    """Close the session in the service's order, then exit."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """A worker log record, re-emitted by the host under ``sonic_bridge.worker``."""

    level: int
    logger: str
    message: str


@dataclass(frozen=True, slots=True)
class AudioAccounted:
    """Worker's running tally of the host's audio frames: sent to a stream, or dropped with a reason."""

    sent: int
    dropped: int
    reason: str


Command = AudioIn | TextIn | ToolResultIn | CloseIn | SettingsIn
WorkerMessage = Event | LogLine | AudioAccounted
