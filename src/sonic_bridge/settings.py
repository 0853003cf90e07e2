"""What one Nova Sonic session is started with: prompt, voice, tools, formats, inference settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sonic_bridge import models
from sonic_bridge.history import Message


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"tool name must be letters, digits, '_' or '-', got {self.name!r}")
        if not isinstance(self.description, str) or not self.description:
            raise ValueError(f"tool {self.name!r} needs a description")
        if not isinstance(self.input_schema, dict):
            raise ValueError(f"tool {self.name!r}: input_schema must be a JSON Schema object")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    @classmethod
    def from_json(cls, raw: Any) -> Tool:
        if not isinstance(raw, dict):
            raise ValueError(f"a tool must be an object with name, description, input_schema; got {raw!r}")
        unknown = set(raw) - {"name", "description", "input_schema"}
        if unknown:
            raise ValueError(f"tool has unknown keys {sorted(unknown)}")
        return cls(raw.get("name", ""), raw.get("description", ""), raw.get("input_schema", {}))


@dataclass(frozen=True, slots=True)
class Inference:
    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7

    def __post_init__(self) -> None:
        if not (isinstance(self.max_tokens, int) and 1 <= self.max_tokens <= 10_000):
            raise ValueError(f"max_tokens must be an integer from 1 to 10000, got {self.max_tokens!r}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be from 0 to 1, got {self.top_p!r}")
        if not 0.0 <= self.temperature <= 1.0:
            raise ValueError(f"temperature must be from 0 to 1, got {self.temperature!r}")

    def to_json(self) -> dict[str, Any]:
        return {"maxTokens": self.max_tokens, "topP": self.top_p, "temperature": self.temperature}


@dataclass(frozen=True, slots=True)
class SessionSettings:
    model_id: str = "amazon.nova-2-sonic-v1:0"
    system_prompt: str = "You are a friendly assistant. Keep your answers short."
    voice: str = "matthew"
    history: tuple[Message, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"  # auto, any, or a tool name (Nova 2 and later)
    input_rate: int = 16000
    output_rate: int = 24000
    inference: Inference = Inference()
    turn_sensitivity: str | None = None  # HIGH, MEDIUM, LOW (Nova 2 and later); None: model default

    def __post_init__(self) -> None:
        info = models.model_info(self.model_id, warn=False)
        models.check_voice(info, self.voice)
        models.check_service_rate("input_rate", self.input_rate)
        models.check_service_rate("output_rate", self.output_rate)
        if not isinstance(self.system_prompt, str) or not self.system_prompt.strip():
            raise ValueError("system_prompt must be a non-empty string")
        if self.turn_sensitivity is not None:
            if self.turn_sensitivity not in models.TURN_SENSITIVITIES:
                raise ValueError(
                    f"turn_sensitivity must be one of {models.TURN_SENSITIVITIES}, got {self.turn_sensitivity!r}"
                )
            if not info.supports_turn_detection:
                raise ValueError(f"{self.model_id} has no turn detection setting; leave turn_sensitivity unset")
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {names}")
        if self.tool_choice not in ("auto", "any") and self.tool_choice not in names:
            raise ValueError(f"tool_choice must be 'auto', 'any' or a tool name, got {self.tool_choice!r}")

    @property
    def model(self) -> models.ModelInfo:
        return models.model_info(self.model_id, warn=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "system_prompt": self.system_prompt,
            "voice": self.voice,
            "history": [m.to_json() for m in self.history],
            "tools": [t.to_json() for t in self.tools],
            "tool_choice": self.tool_choice,
            "input_rate": self.input_rate,
            "output_rate": self.output_rate,
            "inference": {
                "max_tokens": self.inference.max_tokens,
                "top_p": self.inference.top_p,
                "temperature": self.inference.temperature,
            },
            "turn_sensitivity": self.turn_sensitivity,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SessionSettings:
        data = dict(raw)
        data["history"] = tuple(Message.from_json(m) for m in data.get("history", ()))
        data["tools"] = tuple(Tool.from_json(t) for t in data.get("tools", ()))
        data["inference"] = Inference(**data.get("inference", {}))
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json())
