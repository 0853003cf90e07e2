from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SessionInfoData:
    session_id: str
    timestamp_base: int = 16000


@dataclass
class SharedStates:
    active: bool = True
    enable_vad: bool = True


@dataclass
class SessionContext:
    session_info: SessionInfoData
    shared_states: SharedStates = field(default_factory=SharedStates)
