from __future__ import annotations

from dataclasses import dataclass

from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.runtime_data.data_bundle import DataBundle


@dataclass
class ChatData:
    """Classic engine field order; the stream engine adds fields first, so always build with keywords."""

    source: str | None = None
    type: ChatDataType = ChatDataType.NONE
    timestamp: tuple[int, int] = (0, 0)
    data: DataBundle | None = None


@dataclass
class StreamChatData:
    """The stream engine's ChatData: ``stream_id`` first, and first/last-data flags."""

    stream_id: str | None = None
    source: str | None = None
    type: ChatDataType = ChatDataType.NONE
    timestamp: tuple[int, int] = (0, 0)
    data: DataBundle | None = None
    is_first_data: bool = False
    is_last_data: bool = False
