"""Sans-IO Nova Sonic session: intents in, service JSON events out; service events in, host events out.

No sockets, clocks, threads or asyncio: every method is a plain call that returns what to send (input
side) or what happened (output side). The caller sends each returned batch in order from one writer;
a TEXT or TOOL block is always returned whole, so user audio can never land inside an open block
(the service's "Chat history should be sent completely before streaming audio").
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge import history as hist
from sonic_bridge.settings import SessionSettings

JsonEvent = dict[str, Any]
INTERRUPTED_MARKER = '{ "interrupted" : true }'
# One audioInput event stays far below the SDK's 1,000,000-byte part limit once base64-encoded.
MAX_AUDIO_EVENT_BYTES = 64_000


class ProtocolError(Exception):
    """An intent the session cannot accept now; the session stays usable unless it was closed."""


class UnknownToolUse(ProtocolError):
    pass


class _Phase(enum.Enum):
    IDLE = "idle"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(slots=True)
class _Block:
    type: str
    role: str
    stage: ev.Stage


def _event(name: str, body: dict[str, Any]) -> JsonEvent:
    return {"event": {name: body}}


def is_interrupted_marker(text: str) -> bool:
    if text.strip() == INTERRUPTED_MARKER:
        return True
    try:
        return bool(json.loads(text) == {"interrupted": True})
    except (ValueError, TypeError):
        return False


def tool_result_text(content: str | dict[str, Any] | list[Any]) -> str:
    """A tool result as the service takes it: a string, normally JSON."""
    if isinstance(content, dict | list):
        return json.dumps(content)
    if isinstance(content, str):
        return content
    raise TypeError(f"tool result content must be str, dict or list, got {type(content).__name__}")


def parse_tool_arguments(content: Any) -> dict[str, Any]:
    """toolUse.content is a JSON string of arguments, sometimes encoded twice: peel up to two layers."""
    value = content
    for _ in range(3):
        if isinstance(value, dict):
            return value
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return {"_raw": content}
    return value if isinstance(value, dict) else {"_value": value}


class SonicSession:
    """One prompt on one Nova Sonic stream.

    ``response_prefix`` and ``first_turn`` let a session manager keep ids unique and turn numbers
    continuous across renewed streams.
    """

    def __init__(
        self,
        settings: SessionSettings,
        *,
        new_id: Callable[[], str] | None = None,
        response_prefix: str = "r",
        first_turn: int = 0,
    ) -> None:
        self.settings = settings
        self.model = settings.model
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self._phase = _Phase.IDLE
        self.prompt_name = self._new_id()
        self.audio_content_name = self._new_id()
        self._held_audio: list[bytes] = []
        self._pending_tools: dict[str, str] = {}  # toolUseId -> tool name
        self._answered_tools: set[str] = set()
        self._blocks: dict[str, _Block] = {}
        self._response_prefix = response_prefix
        self._response_count = 0
        self._response_id: str | None = None
        self._last_response_id: str | None = None
        self._interrupted: set[str] = set()
        self._turn_id = first_turn
        self._assistant_in_turn = first_turn == 0
        self.history: list[hist.Message] = list(settings.history)

    # ------------------------------------------------------------------ state
    @property
    def is_open(self) -> bool:
        return self._phase is _Phase.OPEN

    @property
    def is_closed(self) -> bool:
        return self._phase is _Phase.CLOSED

    @property
    def pending_tool_uses(self) -> dict[str, str]:
        return dict(self._pending_tools)

    @property
    def turn_id(self) -> int:
        return self._turn_id

    @property
    def assistant_speaking(self) -> bool:
        """A response is open: the model is talking or about to (renewal waits for this to clear)."""
        return self._response_id is not None

    # ------------------------------------------------------------------ intents
    def start(self) -> list[JsonEvent]:
        """sessionStart, promptStart, SYSTEM block, sanitized history, the AUDIO block, held audio."""
        if self._phase is not _Phase.IDLE:
            raise ProtocolError(f"start() on a session that is already {self._phase.value}")
        s = self.settings
        session_start: dict[str, Any] = {"inferenceConfiguration": s.inference.to_json()}
        if s.turn_sensitivity is not None:
            session_start["turnDetectionConfiguration"] = {"endpointingSensitivity": s.turn_sensitivity}
        out = [_event("sessionStart", session_start), _event("promptStart", self._prompt_start())]
        out += self._text_block("SYSTEM", s.system_prompt, interactive=False)
        for message in hist.sanitize(s.history):
            out += self._text_block(message.role.value, message.text, interactive=False)
        out.append(
            _event(
                "contentStart",
                {
                    "promptName": self.prompt_name,
                    "contentName": self.audio_content_name,
                    "type": "AUDIO",
                    "interactive": True,
                    "role": "USER",
                    "audioInputConfiguration": {
                        "mediaType": "audio/lpcm",
                        "sampleRateHertz": s.input_rate,
                        "sampleSizeBits": 16,
                        "channelCount": 1,
                        "audioType": "SPEECH",
                        "encoding": "base64",
                    },
                },
            )
        )
        self._phase = _Phase.OPEN
        for chunk in self._held_audio:
            out += self._audio_events(chunk)
        self._held_audio.clear()
        return out

    def audio(self, pcm16: bytes) -> list[JsonEvent]:
        """User audio: PCM16 little-endian mono at the session's input rate."""
        if not isinstance(pcm16, bytes | bytearray | memoryview):
            raise ProtocolError(f"audio must be PCM16 bytes, got {type(pcm16).__name__}")
        data = bytes(pcm16)
        if not data:
            raise ProtocolError("audio chunk is empty")
        if len(data) % 2:
            raise ProtocolError(f"audio chunk of {len(data)} bytes is not whole 16-bit samples")
        if self._phase is _Phase.CLOSED:
            raise ProtocolError("audio after close")
        if self._phase is _Phase.IDLE:
            self._held_audio.append(data)  # sent right after the AUDIO contentStart
            return []
        return self._audio_events(data)

    def text(self, text: str) -> list[JsonEvent]:
        """Interactive USER text that triggers a response (Nova 2 and later)."""
        self._require_open("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError("text must be a non-empty string")
        if not self.model.supports_text_input:
            raise ProtocolError(
                f"{self.settings.model_id} does not respond to text input; use a Nova 2 model or send audio"
            )
        self.history.append(hist.Message(ev.Role.USER, text))
        return self._text_block("USER", text, interactive=True)

    def tool_result(self, tool_use_id: str, content: str | dict[str, Any] | list[Any]) -> list[JsonEvent]:
        self._require_open("tool_result")
        if tool_use_id in self._answered_tools:
            raise UnknownToolUse(f"tool use {tool_use_id!r} was already answered")
        if tool_use_id not in self._pending_tools:
            raise UnknownToolUse(f"no tool use {tool_use_id!r} is waiting for a result")
        try:
            text = tool_result_text(content)
        except TypeError as exc:
            raise ProtocolError(str(exc)) from None
        del self._pending_tools[tool_use_id]
        self._answered_tools.add(tool_use_id)
        self.history.append(hist.Message(ev.Role.ASSISTANT, hist.tool_result_line(tool_use_id, text)))
        name = self._new_id()
        return [
            _event(
                "contentStart",
                {
                    "promptName": self.prompt_name,
                    "contentName": name,
                    "interactive": False,
                    "type": "TOOL",
                    "role": "TOOL",
                    "toolResultInputConfiguration": {
                        "toolUseId": tool_use_id,
                        "type": "TEXT",
                        "textInputConfiguration": {"mediaType": "text/plain"},
                    },
                },
            ),
            _event("toolResult", {"promptName": self.prompt_name, "contentName": name, "content": text}),
            _event("contentEnd", {"promptName": self.prompt_name, "contentName": name}),
        ]

    def close(self) -> list[JsonEvent]:
        """audio contentEnd, promptEnd, sessionEnd. Closing an unstarted session sends nothing."""
        if self._phase is _Phase.CLOSED:
            raise ProtocolError("close() on a closed session")
        was_open = self._phase is _Phase.OPEN
        self._phase = _Phase.CLOSED
        self._held_audio.clear()
        if not was_open:
            return []
        return [
            _event("contentEnd", {"promptName": self.prompt_name, "contentName": self.audio_content_name}),
            _event("promptEnd", {"promptName": self.prompt_name}),
            _event("sessionEnd", {}),
        ]

    # ------------------------------------------------------------------ service output
    def receive(self, raw: JsonEvent | str | bytes) -> list[ev.Event]:
        """Host events for one service output event. Unknown or malformed events become warnings."""
        try:
            event = json.loads(raw) if isinstance(raw, str | bytes) else raw
            ((name, body),) = event["event"].items()
            if not isinstance(body, dict):
                raise TypeError("event body is not an object")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return [ev.Warning(errors.BAD_SERVICE_EVENT, f"could not read a service event: {exc}")]
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            return [ev.Warning(errors.UNKNOWN_SERVICE_EVENT, f"ignored unknown service event {name!r}")]
        try:
            result: list[ev.Event] = handler(body)
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            return [ev.Warning(errors.BAD_SERVICE_EVENT, f"could not read {name}: {exc}")]
        return result

    def _on_completionStart(self, body: dict[str, Any]) -> list[ev.Event]:
        return []

    def _on_completionEnd(self, body: dict[str, Any]) -> list[ev.Event]:
        return self._end_response(str(body.get("stopReason", "END_TURN")))

    def _on_contentStart(self, body: dict[str, Any]) -> list[ev.Event]:
        kind = str(body.get("type", ""))
        role = str(body.get("role", ""))
        stage = ev.Stage.FINAL
        extra = body.get("additionalModelFields")
        if extra:
            fields_ = json.loads(extra) if isinstance(extra, str) else extra
            stage = ev.Stage(fields_.get("generationStage", "FINAL"))
        self._blocks[str(body.get("contentId", ""))] = _Block(kind, role, stage)
        out: list[ev.Event] = []
        if role == "USER" and kind == "TEXT":
            if self._assistant_in_turn:
                out += self._end_response("END_TURN")
                self._turn_id += 1
                self._assistant_in_turn = False
        elif role in ("ASSISTANT", "TOOL"):
            if self._turn_id == 0:
                self._turn_id = 1
            self._assistant_in_turn = True
            if self._response_id is None:
                self._response_count += 1
                self._response_id = f"{self._response_prefix}{self._response_count}"
        return out

    def _on_textOutput(self, body: dict[str, Any]) -> list[ev.Event]:
        block = self._blocks.get(str(body.get("contentId", "")), _Block("TEXT", "ASSISTANT", ev.Stage.FINAL))
        text = str(body["content"])
        role_name = str(body.get("role") or block.role or "ASSISTANT")
        if role_name == "ASSISTANT" and is_interrupted_marker(text):
            return self._interrupt()
        role = ev.Role.USER if role_name == "USER" else ev.Role.ASSISTANT
        if block.stage is ev.Stage.FINAL:
            self.history.append(hist.Message(role, text))
        return [ev.Transcript(role, block.stage, text, max(self._turn_id, 1))]

    def _on_audioOutput(self, body: dict[str, Any]) -> list[ev.Event]:
        pcm = base64.b64decode(body["content"], validate=True)
        rid = self._response_id or self._last_response_id or f"{self._response_prefix}0"
        if rid in self._interrupted or not pcm:
            return []
        return [ev.AudioOut(pcm, self.settings.output_rate, ev.SampleFormat.INT16, rid)]

    def _on_toolUse(self, body: dict[str, Any]) -> list[ev.Event]:
        tool_use_id = str(body["toolUseId"])
        name = str(body["toolName"])
        arguments = parse_tool_arguments(body.get("content", "{}"))
        self._pending_tools[tool_use_id] = name
        self.history.append(hist.Message(ev.Role.ASSISTANT, hist.tool_call_line(name, arguments)))
        return [ev.ToolCall(name, tool_use_id, arguments)]

    def _on_contentEnd(self, body: dict[str, Any]) -> list[ev.Event]:
        block = self._blocks.pop(str(body.get("contentId", "")), None)
        reason = str(body.get("stopReason", ""))
        kind = str(body.get("type", block.type if block else ""))
        if reason == "INTERRUPTED":
            return self._interrupt() + self._end_response("INTERRUPTED")
        if reason == "END_TURN" and kind == "TEXT" and (block is None or block.role == "ASSISTANT"):
            return self._end_response("END_TURN")
        return []

    def _on_usageEvent(self, body: dict[str, Any]) -> list[ev.Event]:
        details = body.get("details", {})

        def counts(part: dict[str, Any]) -> ev.TokenCounts:
            i, o = part.get("input", {}), part.get("output", {})
            return ev.TokenCounts(
                int(i.get("speechTokens", 0)),
                int(i.get("textTokens", 0)),
                int(o.get("speechTokens", 0)),
                int(o.get("textTokens", 0)),
            )

        return [ev.Usage(counts(details.get("delta", {})), counts(details.get("total", {})))]

    # ------------------------------------------------------------------ helpers
    def _interrupt(self) -> list[ev.Event]:
        rid = self._response_id or self._last_response_id
        if rid is None or rid in self._interrupted:
            return []
        self._interrupted.add(rid)
        return [ev.Interrupted(rid)]

    def _end_response(self, reason: str) -> list[ev.Event]:
        rid = self._response_id
        if rid is None:
            return []
        self._response_id = None
        self._last_response_id = rid
        if rid in self._interrupted:
            reason = "INTERRUPTED"
        return [ev.TurnEnded(reason, rid)]

    def _require_open(self, what: str) -> None:
        if self._phase is _Phase.IDLE:
            raise ProtocolError(f"{what}() before start()")
        if self._phase is _Phase.CLOSED:
            raise ProtocolError(f"{what}() after close()")

    def _prompt_start(self) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "promptName": self.prompt_name,
            "textOutputConfiguration": {"mediaType": "text/plain"},
            "audioOutputConfiguration": {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": s.output_rate,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "voiceId": s.voice,
                "encoding": "base64",
                "audioType": "SPEECH",
            },
        }
        if s.tools:
            body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
            tools = [
                {
                    "toolSpec": {
                        "name": t.name,
                        "description": t.description,
                        "inputSchema": {"json": json.dumps(t.input_schema)},
                    }
                }
                for t in s.tools
            ]
            config: dict[str, Any] = {"tools": tools}
            if self.model.family >= 2:
                if s.tool_choice in ("auto", "any"):
                    config["toolChoice"] = {s.tool_choice: {}}
                else:
                    config["toolChoice"] = {"tool": {"name": s.tool_choice}}
            body["toolConfiguration"] = config
        return body

    def _text_block(self, role: str, text: str, *, interactive: bool) -> list[JsonEvent]:
        name = self._new_id()
        return [
            _event(
                "contentStart",
                {
                    "promptName": self.prompt_name,
                    "contentName": name,
                    "type": "TEXT",
                    "interactive": interactive,
                    "role": role,
                    "textInputConfiguration": {"mediaType": "text/plain"},
                },
            ),
            _event("textInput", {"promptName": self.prompt_name, "contentName": name, "content": text}),
            _event("contentEnd", {"promptName": self.prompt_name, "contentName": name}),
        ]

    def _audio_events(self, data: bytes) -> list[JsonEvent]:
        return [
            _event(
                "audioInput",
                {
                    "promptName": self.prompt_name,
                    "contentName": self.audio_content_name,
                    "content": base64.b64encode(data[i : i + MAX_AUDIO_EVENT_BYTES]).decode("ascii"),
                },
            )
            for i in range(0, len(data), MAX_AUDIO_EVENT_BYTES)
        ]


def dumps(event: JsonEvent) -> str:
    return json.dumps(event, separators=(",", ":"))
