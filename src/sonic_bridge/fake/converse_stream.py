"""The fake Bedrock ConverseStream (sans-IO): ``POST /model/{modelId}/converse-stream``, JSON in, a timed
script of event-stream events out (``messageStart``, ``contentBlockStart``/``Delta``/``Stop``, ``messageStop``,
``metadata``), as the cascade's reasoning model.

A user turn is answered with text deltas that echo the user's words and name the turn; images in the turn
are described (count, size, dominant colour: ``fake.converse.look_at``), so a test can tell which frames were
sent. A turn whose scenario plan names a tool (and the request offers it), or whose words name a tool, gets a
``toolUse`` block instead and ``stopReason`` tool_use; the request that carries the ``toolResult`` is answered
with the result. ``metadata`` carries token counts. Refusals use the service's names and statuses (an unknown
model, roles out of order, a tool result without its call, images to a text-only model or too many); a turn's
plan injects faults (throttle at the request; model_stream_error, truncated_frame, disconnect mid-stream; slow).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from sonic_bridge.fake.converse import INVALID_MODEL, TOKENS_PER_IMAGE, Reply, Seen, _Refused, error_reply, look_at
from sonic_bridge.fake.model import DISCONNECT, TRUNCATE, FakeError, Output
from sonic_bridge.fake.scenario import Scenario, TurnPlan

_PATH = re.compile(r"^/model/([^/?]+)/converse-stream/?$")
DELTA_WORDS = 3  # words per text delta
DELTA_S = 0.03  # between deltas (scaled)
STREAM_FAULTS = {
    "model_stream_error": FakeError("modelStreamErrorException", "An error occurred while streaming the response. "
                                    "Retry your request."),
}


def converse_stream_model(path: str) -> str | None:
    found = _PATH.match(path.split("?", 1)[0])
    return urllib.parse.unquote(found.group(1)) if found else None


@dataclass
class StreamReply:
    """An error (``error``: status, headers, body) or a script of (delay in seconds, output) to stream."""

    error: Reply | None = None
    script: list[tuple[float, Output]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Asked:
    """What one request asked, as the fake read it (for tests)."""

    words: str
    images: list[Seen]
    tools: list[str]
    system: str
    messages: int


def _event(name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"event": name, "body": body}


class FakeConverseStream:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.turns = 0
        self.asked: list[Asked] = []
        self._last: tuple[bytes, StreamReply] | None = None
        self._failed: dict[bytes, int] = {}  # requests whose reply failed mid-stream: their turn
        self._again: int | None = None

    def handle(self, model_id: str, body: bytes, rng_value: float = 0.5) -> StreamReply:
        """A refused request sent again is refused again (the SDK's retries of a planned throttle); a request
        whose reply failed mid-stream, sent again, is answered as that turn, this time without the fault."""
        digest = hashlib.sha256(body).digest()
        if self._last is not None and self._last[0] == digest and self._last[1].error is not None:
            return self._last[1]
        self._again = self._failed.get(digest)
        try:
            reply = self._answer(model_id, body, rng_value)
        except _Refused as exc:
            reply = StreamReply(error=error_reply(exc.status, exc.kind, exc.message))
        if any(not isinstance(item, dict) for _, item in reply.script):
            self._failed[digest] = self.turns
        self._last = (digest, reply)
        return reply

    def _answer(self, model_id: str, body: bytes, rng_value: float) -> StreamReply:
        from sonic_bridge.engines.cascade.settings import TEXT_MODELS, TEXT_ONLY_MODELS, base_model_id
        from sonic_bridge.vision.settings import image_limit

        base = base_model_id(model_id)
        if base not in TEXT_MODELS:
            raise _Refused(400, "ValidationException", INVALID_MODEL)
        try:
            request = json.loads(body)
            messages = request["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must hold at least one message")
        except (ValueError, KeyError, TypeError) as exc:
            raise _Refused(400, "ValidationException", f"Malformed input request: {exc}") from None
        tools = [t.get("toolSpec", {}).get("name") for t in request.get("toolConfig", {}).get("tools", [])]
        system = " ".join(s.get("text", "") for s in request.get("system", []) if isinstance(s, dict))
        max_tokens = request.get("inferenceConfig", {}).get("maxTokens", 512)
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= 10_000:
            raise _Refused(400, "ValidationException", f"The maximum tokens you requested ({max_tokens}) is "
                           "outside the allowed range of 1 to 10000.")
        self._check_roles(messages)
        last = messages[-1]
        words, images, result = self._read_turn(last, limit=image_limit(model_id))
        if images and base in TEXT_ONLY_MODELS:
            raise _Refused(400, "ValidationException", f"This model doesn't support the image content block: "
                           f"{model_id} takes text only.")
        self.asked.append(Asked(words, images, [t for t in tools if isinstance(t, str)], system, len(messages)))
        prior = sum(len(json.dumps(m)) for m in messages[:-1]) // 16
        tokens_in = prior + len(words) // 4 + TOKENS_PER_IMAGE * len(images) + len(system) // 4 + 1
        if result is not None:  # the request that answers a tool call
            return self._script(f"The tool said: {result}.", TurnPlan(), tokens_in, rng_value)
        if self._again is None:
            self.turns += 1
            plan = self.scenario.plan(self.turns)
        else:
            plan = dataclasses.replace(self.scenario.plan(self._again), fault=None)
        if plan.fault == "throttle":
            raise _Refused(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        tool = plan.tool if plan.tool in tools else None
        arguments = plan.arguments
        if tool is None and plan.tool is None:
            named = [t for t in tools if isinstance(t, str) and t.replace("_", " ") in words.lower()]
            tool, arguments = (named[0], {"request": words}) if named else (None, {})
        if tool is not None:
            return self._tool_script(tool, arguments, plan, tokens_in, rng_value)
        text = plan.reply_text or f'You said: "{words}". This is my answer to turn {self.turns}.'
        if images:
            noun = "image" if len(images) == 1 else "images"
            text += f" I see {len(images)} {noun}, the newest {images[-1].width}x{images[-1].height}, mostly " \
                    f"{images[-1].colour}."
        return self._script(text, plan, tokens_in, rng_value)

    @staticmethod
    def _check_roles(messages: list[Any]) -> None:
        expected = "user"
        calls: set[str] = set()
        for i, message in enumerate(messages, 1):
            role = message.get("role") if isinstance(message, dict) else None
            if role != expected:
                raise _Refused(400, "ValidationException", "A conversation must start with a user message and "
                               f"alternate between user and assistant roles (messages.{i} is {role!r}). Try again "
                               "with a conversation that alternates.")
            content = message.get("content")
            if not isinstance(content, list) or not content:
                raise _Refused(400, "ValidationException", f"Malformed input request: messages.{i}.content must "
                               "hold at least one content block")
            for block in content:
                if isinstance(block, dict) and "toolUse" in block:
                    calls.add(str(block["toolUse"].get("toolUseId")))
                if isinstance(block, dict) and "toolResult" in block and str(
                        block["toolResult"].get("toolUseId")) not in calls:
                        raise _Refused(400, "ValidationException", "The toolResult blocks at messages."
                                       f"{i}.content do not match a toolUse block of the previous turn.")
            expected = "assistant" if role == "user" else "user"
        if expected != "assistant":
            raise _Refused(400, "ValidationException", "A conversation must end with a user message.")

    @staticmethod
    def _read_turn(message: dict[str, Any], *, limit: int) -> tuple[str, list[Seen], str | None]:
        words: list[str] = []
        images: list[Seen] = []
        result: str | None = None
        blocks = [b for b in message["content"] if isinstance(b, dict) and "image" in b]
        if len(blocks) > limit:
            raise _Refused(400, "ValidationException", f"The model returned the following errors: too many "
                           f"images: {len(blocks)} were sent; this model takes at most {limit} per request.")
        for c, block in enumerate(message["content"], 1):
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                words.append(block["text"])
            elif isinstance(block.get("image"), dict):
                image = block["image"]
                raw = image.get("source", {}).get("bytes")
                try:
                    data = base64.b64decode(raw if isinstance(raw, str) else "", validate=True)
                except (binascii.Error, ValueError):
                    data = b""
                images.append(look_at(str(image.get("format")), data, f"messages.member.content.{c}.member.image"))
            elif isinstance(block.get("toolResult"), dict):
                parts = block["toolResult"].get("content", [])
                texts = [p["text"] if "text" in p else json.dumps(p.get("json")) for p in parts if isinstance(p, dict)]
                result = " ".join(texts)
        return " ".join(words).strip(), images, result

    def _thinking(self, plan: TurnPlan, rng_value: float) -> float:
        lo, hi = self.scenario.thinking_ms
        return self.scenario.scaled((lo + (hi - lo) * rng_value) / 1000 + (3.0 if plan.fault == "slow" else 0.0))

    def _script(self, text: str, plan: TurnPlan, tokens_in: int, rng_value: float) -> StreamReply:
        words = text.split(" ")
        pieces = [" ".join(words[i : i + DELTA_WORDS]) + (" " if i + DELTA_WORDS < len(words) else "")
                  for i in range(0, len(words), DELTA_WORDS)]
        step = self.scenario.scaled(DELTA_S)
        script: list[tuple[float, Output]] = [(self._thinking(plan, rng_value), _event("messageStart",
                                                                                        {"role": "assistant"}))]
        for n, piece in enumerate(pieces):
            if plan.fault in ("model_stream_error", "truncated_frame", "disconnect") and n == len(pieces) // 2:
                fault = STREAM_FAULTS.get(plan.fault) or (TRUNCATE if plan.fault == "truncated_frame" else DISCONNECT)
                script.append((step, fault))
                return StreamReply(script=script)
            script.append((step if n else 0.0, _event("contentBlockDelta",
                                                      {"contentBlockIndex": 0, "delta": {"text": piece}})))
        script += [(0.0, _event("contentBlockStop", {"contentBlockIndex": 0})),
                   (0.0, _event("messageStop", {"stopReason": "end_turn"})),
                   (0.0, _metadata(tokens_in, len(text) // 4 + 1))]
        return StreamReply(script=script)

    def _tool_script(self, tool: str, arguments: dict[str, Any], plan: TurnPlan, tokens_in: int,
                     rng_value: float) -> StreamReply:
        tool_use_id = f"tooluse_{self.turns}_{hashlib.sha256(tool.encode()).hexdigest()[:12]}"
        text = "Let me check that."
        args = json.dumps(arguments)
        return StreamReply(script=[
            (self._thinking(plan, rng_value), _event("messageStart", {"role": "assistant"})),
            (0.0, _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})),
            (0.0, _event("contentBlockStop", {"contentBlockIndex": 0})),
            (0.0, _event("contentBlockStart", {"contentBlockIndex": 1,
                                               "start": {"toolUse": {"toolUseId": tool_use_id, "name": tool}}})),
            (0.0, _event("contentBlockDelta", {"contentBlockIndex": 1,
                                               "delta": {"toolUse": {"input": args[: len(args) // 2]}}})),
            (0.0, _event("contentBlockDelta", {"contentBlockIndex": 1,
                                               "delta": {"toolUse": {"input": args[len(args) // 2 :]}}})),
            (0.0, _event("contentBlockStop", {"contentBlockIndex": 1})),
            (0.0, _event("messageStop", {"stopReason": "tool_use"})),
            (0.0, _metadata(tokens_in, len(text) // 4 + len(args) // 4 + 1)),
        ])


def _metadata(tokens_in: int, tokens_out: int) -> dict[str, Any]:
    return _event("metadata", {"usage": {"inputTokens": tokens_in, "outputTokens": tokens_out,
                                         "totalTokens": tokens_in + tokens_out}, "metrics": {"latencyMs": 5}})


def render(item: Output) -> tuple[bytes, bool]:
    """Wire bytes of one scripted output and whether the response ends after them."""
    from sonic_bridge.fake import eventstream as es
    from sonic_bridge.fake.wire import ClientDisconnect

    if isinstance(item, dict):
        headers = es.string_headers(message_type="event", event_type=item["event"], content_type="application/json")
        return es.encode_message(headers, json.dumps(item["body"]).encode()), item["event"] == "metadata"
    if isinstance(item, FakeError):
        headers = es.string_headers(message_type="exception", exception_type=item.kind,
                                    content_type="application/json")
        return es.encode_message(headers, json.dumps({"message": item.message}).encode()), True
    if item == TRUNCATE:
        frame, _ = render(_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "cut"}}))
        return frame[: len(frame) // 2], True
    if item == DISCONNECT:
        raise ClientDisconnect("the fake Bedrock dropped the connection")
    return b"", True


class Script:
    """A scripted reply as a stream model for the doors: ``pump`` what is due, ``next_due``."""

    def __init__(self, script: list[tuple[float, Output]], now: float) -> None:
        self._script = list(script)
        self._due = now + (script[0][0] if script else 0.0)
        self.failed = False
        self.ended = False
        self.input_events = 0
        self.buffered_input = 0

    def pump(self, now: float) -> list[Output]:
        ready: list[Output] = []
        while self._script and self._due <= now:
            ready.append(self._script.pop(0)[1])
            if self._script:
                self._due += self._script[0][0]
        if not self._script and not self.ended:
            self.ended = True
        return ready

    def next_due(self) -> float | None:
        return self._due if self._script else None
