"""What one Nova Sonic session is started with: prompt, voice, tools, formats, inference settings."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sonic_bridge import checks, jsonval
from sonic_bridge.engines.sonic import models
from sonic_bridge.engines.sonic.history import Message

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# One event may carry at most 1,000,000 bytes (the SDK's part limit): prompts and tools stay well below.
MAX_PROMPT_BYTES = 100_000
MAX_TOOL_DESCRIPTION_BYTES = 10_000
MAX_TOOLS_JSON_BYTES = 500_000
MAX_TOOLS = 100
MAX_GREETING_BYTES = 10_000


def _fields_from_json(cls: type[Any], raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be an object, got {checks.show(raw)}")
    unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{what} has unknown keys {sorted(map(str, unknown))}")
    return dict(raw)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TOOL_NAME.match(self.name):
            raise ValueError(f"tool name must be 1 to 64 letters, digits, '_' or '-', got {checks.show(self.name)}")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ValueError(f"tool {self.name!r} needs a description (a non-empty string)")
        checks.text(f"tool {self.name!r} description", self.description, max_bytes=MAX_TOOL_DESCRIPTION_BYTES)
        if not isinstance(self.input_schema, dict):
            raise ValueError(
                f"tool {self.name!r}: input_schema must be a JSON Schema object (a dict), "
                f"got {checks.show(self.input_schema)}"
            )
        text = jsonval.dumps(self.input_schema, what=f"tool {self.name!r} input_schema")
        # A snapshot: later changes to the caller's dict cannot make an accepted tool unsendable.
        object.__setattr__(self, "input_schema", json.loads(text))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    @classmethod
    def from_json(cls, raw: Any) -> Tool:
        data = _fields_from_json(cls, raw, "a tool (name, description, input_schema)")
        return cls(data.get("name", ""), data.get("description", ""), data.get("input_schema", {}))


@dataclass(frozen=True, slots=True)
class Inference:
    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7

    def __post_init__(self) -> None:
        checks.integer("inference.max_tokens", self.max_tokens, 1, 10_000)
        checks.number("inference.top_p", self.top_p, 0.0, 1.0)
        checks.number("inference.temperature", self.temperature, 0.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {"maxTokens": self.max_tokens, "topP": self.top_p, "temperature": self.temperature}


@dataclass(frozen=True, slots=True)
class SessionSettings:
    model_id: str = models.DEFAULT_MODEL_ID
    system_prompt: str = "You are a friendly assistant. Keep your answers short."
    voice: str = "matthew"
    history: tuple[Message, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"  # auto, any, or a tool name (Nova 2 and later)
    input_rate: int = 16000
    output_rate: int = 24000
    inference: Inference = Inference()
    turn_sensitivity: str | None = None  # HIGH, MEDIUM, LOW (Nova 2 and later); None: model default
    # The avatar speaks first (Nova 2 and later): this instruction goes to the model as typed text when the
    # session is ready, e.g. "Greet the visitor in one short sentence." None: it waits for the user.
    greeting: str | None = None

    def __post_init__(self) -> None:
        info = models.model_info(self.model_id)  # warns (once) about an id it does not know
        models.check_voice(info, self.voice)
        models.check_service_rate("input_rate", self.input_rate)
        models.check_service_rate("output_rate", self.output_rate)
        checks.text("system_prompt", self.system_prompt, max_bytes=MAX_PROMPT_BYTES)
        object.__setattr__(self, "history", self._sequence("history", self.history, Message, "Message(role, text)"))
        object.__setattr__(self, "tools", self._sequence("tools", self.tools, Tool, "Tool(name, description, schema)"))
        if not isinstance(self.inference, Inference):
            raise ValueError(f"inference must be an Inference(max_tokens, top_p, temperature), got "
                             f"{checks.show(self.inference)}")
        if self.turn_sensitivity is not None:
            checks.one_of("turn_sensitivity", self.turn_sensitivity, models.TURN_SENSITIVITIES)
            if not info.supports_turn_detection:
                raise ValueError(f"{self.model_id} has no turn detection setting; leave turn_sensitivity unset")
        if self.greeting is not None:
            checks.text("greeting", self.greeting, max_bytes=MAX_GREETING_BYTES)
            if not info.supports_text_input:
                raise ValueError(f"{self.model_id} cannot speak first (it takes no typed text); leave greeting "
                                 "unset or use a Nova 2 model")
        if len(self.tools) > MAX_TOOLS:
            raise ValueError(f"tools holds {len(self.tools)} tools; at most {MAX_TOOLS} are allowed")
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {names}")
        size = len(json.dumps([t.to_json() for t in self.tools]))
        if size > MAX_TOOLS_JSON_BYTES:
            raise ValueError(f"the tools take {size} bytes as JSON; at most {MAX_TOOLS_JSON_BYTES} fit in one event")
        if not isinstance(self.tool_choice, str) or (
            self.tool_choice not in ("auto", "any") and self.tool_choice not in names
        ):
            raise ValueError(
                f"tool_choice must be 'auto', 'any' or a tool name {names}, got {checks.show(self.tool_choice)}"
            )
        if self.tool_choice != "auto" and not info.supports_tool_choice:
            raise ValueError(f"{self.model_id} has no tool_choice setting (Nova 2 and later); leave it 'auto'")

    @staticmethod
    def _sequence(name: str, value: Any, kind: type[Any], how: str) -> tuple[Any, ...]:
        """A tuple of ``kind`` (a list is taken as one); anything else named with its position."""
        if isinstance(value, str | bytes | dict) or not isinstance(value, tuple | list):
            raise ValueError(f"{name} must be a tuple of {kind.__name__}, got {checks.show(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, kind):
                raise ValueError(f"{name}[{i}] must be a {how}, got {checks.show(item)}")
        return tuple(value)

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
            "greeting": self.greeting,
        }

    @classmethod
    def from_json(cls, raw: Any) -> SessionSettings:
        data = _fields_from_json(cls, raw, "session")
        data["history"] = tuple(Message.from_json(m) for m in data.get("history", ()))
        data["tools"] = tuple(Tool.from_json(t) for t in data.get("tools", ()))
        data["inference"] = Inference(**_fields_from_json(Inference, data.get("inference", {}), "session.inference"))
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json())
