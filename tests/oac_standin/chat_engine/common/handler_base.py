from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_engine_config_data import HandlerBaseConfigModel
from chat_engine.data_models.runtime_data.data_bundle import DataBundleDefinition


class ChatDataConsumeMode(Enum):
    ONCE = -1
    DEFAULT = 0


@dataclass
class HandlerBaseInfo:
    name: str | None = None
    config_model: type[HandlerBaseConfigModel] | None = None
    client_session_delegate_class: type | None = None
    load_priority: int = 0


@dataclass
class HandlerDataInfo:
    type: ChatDataType = ChatDataType.NONE
    definition: DataBundleDefinition | None = None
    input_priority: int = 0
    input_consume_mode: ChatDataConsumeMode = ChatDataConsumeMode.DEFAULT


@dataclass
class HandlerDetail:
    inputs: dict[ChatDataType, HandlerDataInfo] = field(default_factory=dict)
    outputs: dict[ChatDataType, HandlerDataInfo] = field(default_factory=dict)


class HandlerBase(ABC):
    def __init__(self) -> None:
        self.engine: weakref.ReferenceType[Any] | None = None
        self.handler_root: str | None = None

    def on_before_register(self) -> None:  # noqa: B027 - optional hook, as upstream
        pass

    @abstractmethod
    def get_handler_info(self) -> HandlerBaseInfo: ...

    @abstractmethod
    def load(self, engine_config: Any, handler_config: HandlerBaseConfigModel | None = None) -> None: ...

    @abstractmethod
    def create_context(self, session_context: Any, handler_config: HandlerBaseConfigModel | None = None) -> Any: ...

    @abstractmethod
    def start_context(self, session_context: Any, handler_context: Any) -> None: ...

    @abstractmethod
    def get_handler_detail(self, session_context: Any, context: Any) -> HandlerDetail: ...

    @abstractmethod
    def handle(self, context: Any, inputs: Any, output_definitions: dict[ChatDataType, HandlerDataInfo]) -> Any: ...

    @abstractmethod
    def destroy_context(self, context: Any) -> None: ...

    def destroy(self) -> None:  # noqa: B027 - optional hook, as upstream
        pass
