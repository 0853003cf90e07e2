from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat_engine.data_models.chat_signal_type import ChatSignalSourceType, ChatSignalType


@dataclass
class ChatSignal:
    type: ChatSignalType = ChatSignalType.BEGIN
    source_type: ChatSignalSourceType = ChatSignalSourceType.CLIENT
    source_name: str | None = None
    signal_data: dict[str, Any] | None = None
