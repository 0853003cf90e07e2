"""One reply of the Nova text/multimodal model through Bedrock ConverseStream (aws-sdk-bedrock-runtime).

Messages are kept as plain dicts (``{"role": "user", "content": [{"text": ...}, {"image": jpeg},
{"toolUse": {...}}, {"toolResult": {...}}]}``) and become the SDK's models only here. ``stream`` yields
``Text`` deltas, ``ToolUse`` calls (their input JSON assembled from its deltas), ``Tokens`` and ``Stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sonic_bridge import errors
from sonic_bridge.engines.cascade.clients import classify
from sonic_bridge.engines.cascade.settings import CascadeSettings
from sonic_bridge.engines.failures import BackendError
from sonic_bridge.settings import Tool

Msg = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    tool_use_id: str
    name: str
    arguments: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int
    output: int


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str


Part = Text | ToolUse | Tokens | Stop


def _block(block: dict[str, Any]) -> Any:
    from aws_sdk_bedrock_runtime import models as m
    from smithy_core.documents import Document

    if "text" in block:
        return m.ContentBlockText(block["text"])
    if "image" in block:
        return m.ContentBlockImage(m.ImageBlock(format="jpeg", source=m.ImageSourceBytes(block["image"])))
    if "toolUse" in block:
        use = block["toolUse"]
        return m.ContentBlockToolUse(m.ToolUseBlock(tool_use_id=use["toolUseId"], name=use["name"],
                                                    input=Document(use["input"])))
    result = block["toolResult"]
    return m.ContentBlockToolResult(m.ToolResultBlock(tool_use_id=result["toolUseId"],
                                                      content=[m.ToolResultContentBlockText(result["text"])]))


def request(settings: CascadeSettings, system: str, messages: list[Msg], tools: tuple[Tool, ...],
            tool_choice: str) -> Any:
    from aws_sdk_bedrock_runtime import models as m
    from smithy_core.documents import Document

    fields: dict[str, Any] = {
        "model_id": settings.model_id,
        "messages": [m.Message(role=msg["role"], content=[_block(b) for b in msg["content"]]) for msg in messages],
        "system": [m.SystemContentBlockText(system)],
        "inference_config": m.InferenceConfiguration(max_tokens=settings.max_tokens,
                                                     temperature=settings.temperature, top_p=settings.top_p),
    }
    if tools:
        choice: Any = {"auto": m.ToolChoiceAuto(m.AutoToolChoice()), "any": m.ToolChoiceAny(m.AnyToolChoice())}.get(
            tool_choice) or m.ToolChoiceTool(m.SpecificToolChoice(name=tool_choice))
        fields["tool_config"] = m.ToolConfiguration(tools=[
            m.ToolToolSpec(m.ToolSpecification(name=t.name, description=t.description,
                                               input_schema=m.ToolInputSchemaJson(Document(t.input_schema))))
            for t in tools], tool_choice=choice)
    return m.ConverseStreamInput(**fields)


async def stream(client: Any, call: Any, timeout: float) -> AsyncIterator[Part]:
    """The reply's parts as they arrive; BackendError (classified) on any failure or a silent model."""
    from aws_sdk_bedrock_runtime import models as m

    try:
        response = await asyncio.wait_for(client.converse_stream(call), timeout)
    except TimeoutError:
        raise BackendError(errors.SERVICE_ERROR, f"the Nova model did not answer within {timeout:g} s",
                           recoverable=True, kind="ModelTimeoutException") from None
    except Exception as exc:
        raise classify(exc) from None
    tools: dict[int, tuple[str, str, list[str]]] = {}
    try:
        while True:
            try:
                event = await asyncio.wait_for(response.output_stream.receive(), timeout)
            except TimeoutError:
                raise BackendError(errors.SERVICE_ERROR, f"the Nova model stopped for more than {timeout:g} s",
                                   recoverable=True, kind="ModelTimeoutException") from None
            if event is None:
                return
            value = event.value
            if isinstance(event, m.ConverseStreamOutputContentBlockStart) and isinstance(
                    value.start, m.ContentBlockStartToolUse):
                tools[value.content_block_index] = (value.start.value.tool_use_id, value.start.value.name, [])
            elif isinstance(event, m.ConverseStreamOutputContentBlockDelta):
                if isinstance(value.delta, m.ContentBlockDeltaText):
                    yield Text(value.delta.value)
                elif isinstance(value.delta, m.ContentBlockDeltaToolUse) and value.content_block_index in tools:
                    tools[value.content_block_index][2].append(value.delta.value.input)
            elif isinstance(event, m.ConverseStreamOutputContentBlockStop) and value.content_block_index in tools:
                tool_use_id, name, pieces = tools.pop(value.content_block_index)
                yield ToolUse(tool_use_id, name, _arguments("".join(pieces)))
            elif isinstance(event, m.ConverseStreamOutputMessageStop):
                yield Stop(str(getattr(value.stop_reason, "value", value.stop_reason)))
            elif isinstance(event, m.ConverseStreamOutputMetadata) and value.usage is not None:
                yield Tokens(value.usage.input_tokens or 0, value.usage.output_tokens or 0)
    except BackendError:
        raise
    except Exception as exc:
        raise classify(exc) from None
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # a stream that failed may not close cleanly; nothing is lost
                await close()


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"value": value}
