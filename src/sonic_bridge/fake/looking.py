"""How the fake Sonic uses a look tool: which registered tool it is, when a turn asks for it, what it says."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from sonic_bridge.fake.scenario import TurnPlan

DEFAULT_NAME = "look_at_camera"
_ASKS = re.compile(r"\b(look|looking|see|seeing|camera|watch|show|holding|wearing)\b", re.IGNORECASE)


def look_tool_in(tools: list[Any]) -> str | None:
    """The registered look tool: ``look_at_camera``, else a tool whose only required argument is ``question``."""
    found: str | None = None
    for tool in tools:
        spec = tool.get("toolSpec", {}) if isinstance(tool, dict) else {}
        name = spec.get("name")
        if name == DEFAULT_NAME:
            return DEFAULT_NAME
        try:
            schema = json.loads(spec.get("inputSchema", {}).get("json", "{}"))
        except (TypeError, ValueError, AttributeError):
            continue
        if isinstance(schema, dict) and schema.get("required") == ["question"] and found is None:
            found = name if isinstance(name, str) else None
    return found


def with_look(plan: TurnPlan, words: str | None, tool: str | None) -> TurnPlan:
    """A turn that asks to look calls the look tool with its words, unless its plan says otherwise."""
    if plan.tool is not None or plan.fault is not None or tool is None or not words or not _ASKS.search(words):
        return plan
    return dataclasses.replace(plan, tool=tool, arguments={"question": words})


def spoken_result(result: str) -> str:
    """What the fake says after a look: the answer, or that it cannot see."""
    try:
        data = json.loads(result)
    except ValueError:
        return f"The tool said: {result}"
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return str(data["answer"])
    if isinstance(data, dict) and data.get("camera") == "unavailable":
        return f"Sorry, I cannot see right now: {data.get('reason', 'the camera is unavailable')}."
    return f"The tool said: {result}"
