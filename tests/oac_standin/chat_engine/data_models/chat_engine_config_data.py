from __future__ import annotations

from pydantic import BaseModel, Field


class HandlerBaseConfigModel(BaseModel):
    enabled: bool = Field(default=True)
    module: str | None = Field(default=None)
    concurrent_limit: int = Field(default=1)


class ChatEngineConfigModel(BaseModel):
    model_root: str = ""
    concurrent_limit: int = Field(default=1)
    handler_search_path: list[str] = Field(default_factory=list)
    handler_configs: dict[str, dict] | None = None
