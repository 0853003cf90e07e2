"""Sans-IO Nova Sonic session: intents in, service JSON events out; service events in, host events out.

No sockets, clocks, threads or asyncio: every method is a plain call that returns what to send (input
side) or what happened (output side). The caller sends each returned batch in order from one writer;
a TEXT or TOOL block is always returned whole, so user audio can never land inside an open block
(the service's "Chat history should be sent completely before streaming audio").
"""

from __future__ import annotations

import base64
import enum
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sonic_bridge import errors, jsonval
from sonic_bridge import events as ev
from sonic_bridge.engines.sonic import history as hist
from sonic_bridge.engines.sonic.captions import Captioner
from sonic_bridge.settings import SessionSettings

JsonEvent = dict[str, Any]
INTERRUPTED_MARKER = '{ "interrupted" : true }'
# One audioInput event stays far below the SDK's 1,000,000-byte part limit once base64-encoded.
MAX_AUDIO_EVENT_BYTES = 64_000
# Content blocks the service opened and never closed are forgotten oldest first beyond this many.
MAX_OPEN_BLOCKS = 256
_I64_MAX = 2**63 - 1
_STAGES = frozenset(stage.value for stage in ev.Stage)


class ProtocolError(Exception):
    """An intent the session cannot accept now; the session stays usable unless it was closed."""


class UnknownToolUse(ProtocolError):
    pass


class _Malformed(ValueError):
    """A service event field of the wrong shape (reported as a warning, never raised to the caller)."""


def _kind(value: object) -> str:
    """A JSON value's kind, for messages: 'a string', 'an object', 'a number'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _str(body: dict[str, Any], key: str, default: str | None = None) -> str:
    """A string field; absent or null gives ``default`` (required when ``default`` is None)."""
    value = body.get(key)
    if value is None:
        if default is None:
            raise _Malformed(f"{key} is missing")
        return default
    if not isinstance(value, str):
        raise _Malformed(f"{key} must be a string, got {_kind(value)}")
    return value


def _obj(body: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """An object field; absent or null gives an empty object."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"{where}{key} must be an object, got {_kind(value)}")
    return value


def _count(part: dict[str, Any], key: str, where: str) -> int:
    """A token count: a whole number from 0 that fits the host's 64-bit field."""
    value = part.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _I64_MAX:
        raise _Malformed(f"{where}.{key} must be a whole number from 0 to 2**63-1, got {value!r:.40}")
    return value


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
    stripped = text.strip()
    if stripped == INTERRUPTED_MARKER:
        return True
    if not (stripped.startswith("{") and stripped.endswith("}") and len(stripped) < 200):
        return False  # only a tiny object can be the marker: never parse long transcripts
    try:
        return bool(jsonval.loads(stripped, what="text") == {"interrupted": True})
    except ValueError:
        return False


def tool_result_text(content: str | dict[str, Any] | list[Any]) -> str:
    """A tool result as the service takes it: a string, normally JSON.

    A dict or list must be plain JSON: NaN, infinity, sets, bytes or nesting deeper than
    ``jsonval.MAX_DEPTH`` raise here (``ValueError``, ``TypeError`` for a wrong type), on the host,
    before anything is queued: the service would refuse the non-JSON token ``NaN`` and end the turn.
    """
    if isinstance(content, dict | list):
        return jsonval.dumps(content, what="tool result")
    if isinstance(content, str):
        return content
    raise TypeError(f"tool result content must be str, dict or list, got {type(content).__name__}")


def parse_tool_arguments(content: Any) -> dict[str, Any]:
    """toolUse.content is a JSON string of arguments, sometimes encoded twice: peel up to two layers.

    Text that is not plain JSON (invalid, NaN, too deep) reaches the host as ``{"_raw": text}`` so that
    the call can still be answered.
    """
    value = content
    for _ in range(3):
        if isinstance(value, dict):
            break
        if not isinstance(value, str):
            break
        try:
            value = jsonval.loads(value, what="toolUse.content") if value.strip() else {}
        except ValueError:
            return {"_raw": content}
    result = value if isinstance(value, dict) else {"_value": value}
    jsonval.check(result, what="toolUse.content")  # the host's codec carries only plain JSON
    return result


class SonicSession:
    """One prompt on one Nova Sonic stream.

    ``response_prefix`` and ``first_turn`` let a session manager keep ids unique and turn numbers
    continuous across renewed streams.

    ``captions``: each AudioOut carries the words estimated to start in it (``engines.sonic.captions``). Then the
    newest chunk of an audio block is held back until the next service event (or ``flush_audio``), so that what
    the estimate left over when the block ends travels with the block's last chunk, and is dropped with it
    when the next event says the reply was cut off.
    """

    def __init__(
        self,
        settings: SessionSettings,
        *,
        new_id: Callable[[], str] | None = None,
        response_prefix: str = "r",
        first_turn: int = 0,
        captions: bool = False,
    ) -> None:
        self._captions = Captioner() if captions else None
        self._held: ev.AudioOut | None = None  # the newest reply chunk, not yet handed out (captions only)
        self._carry = ""  # caption text whose chunk has already gone: it rides on the next one
        self._block_ended = False  # an audio block ended: the next event says whether it was cut off
        self._caption_sent = 0  # caption characters handed out in this response
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
        except (TypeError, ValueError) as exc:
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
        """Host events for one service output event. Unknown or malformed events become warnings.

        Never raises: the service changes its event shapes between model generations, and one
        unexpected field must not end the conversation. Handlers read every field before they change
        any state, so a refused event leaves the session as it was.
        """
        try:
            if isinstance(raw, str | bytes | bytearray):
                event = jsonval.loads(raw, what="the event")
            else:
                jsonval.check(raw, what="the event")
                event = raw
            if not isinstance(event, dict) or not isinstance(event.get("event"), dict):
                raise _Malformed(f"expected {{'event': {{name: body}}}}, got {_kind(event)}")
            if len(event["event"]) != 1:
                raise _Malformed(f"expected one event name, got {len(event['event'])}")
            ((name, body),) = event["event"].items()
            if not isinstance(body, dict):
                raise _Malformed(f"the body of {name!r} is {_kind(body)}, not an object")
        except ValueError as exc:
            return [ev.Warning(errors.BAD_SERVICE_EVENT, f"could not read a service event: {exc}")]
        handler = getattr(self, f"_on_{name}", None) if isinstance(name, str) else None
        if handler is None:
            return [ev.Warning(errors.UNKNOWN_SERVICE_EVENT, f"ignored unknown service event {name!r:.80}")]
        try:
            result: list[ev.Event] = handler(body)
        except Exception as exc:  # any bad shape: reported, and the stream reader goes on
            why = str(exc) if isinstance(exc, _Malformed) else f"{type(exc).__name__}: {exc}"
            return [ev.Warning(errors.BAD_SERVICE_EVENT, f"ignored a malformed {name}: {why}")]
        return result

    def _on_completionStart(self, body: dict[str, Any]) -> list[ev.Event]:
        return []

    def _on_completionEnd(self, body: dict[str, Any]) -> list[ev.Event]:
        return self._end_response(_str(body, "stopReason", "END_TURN"))

    def _on_contentStart(self, body: dict[str, Any]) -> list[ev.Event]:
        kind = _str(body, "type", "")
        role = _str(body, "role", "")
        content_id = _str(body, "contentId", "")
        stage, out = self._generation_stage(body.get("additionalModelFields"))
        self._blocks[content_id] = _Block(kind, role, stage)
        while len(self._blocks) > MAX_OPEN_BLOCKS:
            del self._blocks[next(iter(self._blocks))]
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
        if self._captions is not None and kind in ("AUDIO", "TOOL"):
            out = self._settle(next_audio=kind == "AUDIO") + out  # the block before was not cut off
            if kind == "AUDIO":
                self._captions.block_start()
        return out

    @staticmethod
    def _generation_stage(extra: Any) -> tuple[ev.Stage, list[ev.Event]]:
        """The block's stage; an unreadable or new stage keeps the block (as FINAL) with a warning."""
        if not extra:
            return ev.Stage.FINAL, []
        try:
            fields_ = jsonval.loads(extra, what="additionalModelFields") if isinstance(extra, str) else extra
            if not isinstance(fields_, dict):
                raise _Malformed(f"additionalModelFields must be an object, got {_kind(fields_)}")
            stage = _str(fields_, "generationStage", "FINAL")
            if stage not in _STAGES:
                raise _Malformed(f"unknown generationStage {stage!r:.40}")
        except ValueError as exc:
            why = f"contentStart: {exc} (the block is read as FINAL)"
            return ev.Stage.FINAL, [ev.Warning(errors.BAD_SERVICE_EVENT, why)]
        return ev.Stage(stage), []

    def _on_textOutput(self, body: dict[str, Any]) -> list[ev.Event]:
        text = _str(body, "content")
        block = self._blocks.get(_str(body, "contentId", ""), _Block("TEXT", "ASSISTANT", ev.Stage.FINAL))
        role_name = _str(body, "role", "") or block.role or "ASSISTANT"
        if role_name == "ASSISTANT" and is_interrupted_marker(text):
            return self._interrupt()
        role = ev.Role.USER if role_name == "USER" else ev.Role.ASSISTANT
        out = self._settle()
        if self._captions is not None and role is ev.Role.ASSISTANT and block.stage is ev.Stage.SPECULATIVE:
            self._captions.sentence(text)  # what the next audio block says
        if block.stage is ev.Stage.FINAL:
            self.history.append(hist.Message(role, text))
        return [*out, ev.Transcript(role, block.stage, text, max(self._turn_id, 1))]

    def _on_audioOutput(self, body: dict[str, Any]) -> list[ev.Event]:
        pcm = base64.b64decode(_str(body, "content"), validate=True)
        if len(pcm) % 2:
            raise _Malformed(f"content holds {len(pcm)} bytes, not whole 16-bit samples")
        rid = self._response_id or self._last_response_id or f"{self._response_prefix}0"
        if rid in self._interrupted or not pcm:
            return []
        rate = self.settings.output_rate
        if self._captions is None:
            return [ev.AudioOut(pcm, rate, ev.SampleFormat.INT16, rid)]
        out = self._settle(next_audio=True)  # normally settled by the block's contentStart already
        text = self._carry + self._captions.chunk(len(pcm) / (2 * rate))
        self._carry = ""
        out += self._release()
        self._held = ev.AudioOut(pcm, rate, ev.SampleFormat.INT16, rid, text)
        return out

    def _on_toolUse(self, body: dict[str, Any]) -> list[ev.Event]:
        tool_use_id = _str(body, "toolUseId")
        name = _str(body, "toolName")
        arguments = parse_tool_arguments(body.get("content", "{}"))
        self._pending_tools[tool_use_id] = name
        self.history.append(hist.Message(ev.Role.ASSISTANT, hist.tool_call_line(name, arguments)))
        return [*self._settle(), ev.ToolCall(name, tool_use_id, arguments)]

    def _on_contentEnd(self, body: dict[str, Any]) -> list[ev.Event]:
        content_id = _str(body, "contentId", "")
        reason = _str(body, "stopReason", "")
        declared = _str(body, "type", "")
        block = self._blocks.pop(content_id, None)
        kind = declared or (block.type if block else "")
        if reason == "INTERRUPTED":
            return self._interrupt() + self._end_response("INTERRUPTED")
        if kind == "AUDIO" and self._captions is not None:
            self._end_audio_block()
            return []
        if reason == "END_TURN" and kind == "TEXT" and (block is None or block.role == "ASSISTANT"):
            return self._end_response("END_TURN")
        return []

    def _on_usageEvent(self, body: dict[str, Any]) -> list[ev.Event]:
        details = _obj(body, "details")

        def counts(name: str) -> ev.TokenCounts:
            part = _obj(details, name, "details.")
            i = _obj(part, "input", f"details.{name}.")
            o = _obj(part, "output", f"details.{name}.")
            return ev.TokenCounts(
                _count(i, "speechTokens", f"details.{name}.input"),
                _count(i, "textTokens", f"details.{name}.input"),
                _count(o, "speechTokens", f"details.{name}.output"),
                _count(o, "textTokens", f"details.{name}.output"),
            )

        return [ev.Usage(counts("delta"), counts("total"))]

    # ------------------------------------------------------------------ helpers
    def _interrupt(self) -> list[ev.Event]:
        rid = self._response_id or self._last_response_id
        if rid is None or rid in self._interrupted:
            return []
        self._interrupted.add(rid)
        self._drop_captions()  # the held chunk was never heard: the caption ends with the last one sent
        return [ev.Interrupted(rid)]

    def _end_response(self, reason: str) -> list[ev.Event]:
        rid = self._response_id
        if rid is None:
            return []
        out: list[ev.Event] = []
        if self._captions is not None and rid not in self._interrupted:
            if self._held is not None or not self._block_ended:
                self._end_audio_block()  # the response ended without closing its audio block
            out = self._settle()
        self._drop_captions()
        self._response_id = None
        self._last_response_id = rid
        if rid in self._interrupted:
            reason = "INTERRUPTED"
        return [*out, ev.TurnEnded(reason, rid)]

    # ------------------------------------------------------------------ captions
    @property
    def held_audio(self) -> ev.AudioOut | None:
        """The reply chunk held back for its caption (captions only), for a manager's flush timer."""
        return self._held

    def flush_audio(self) -> list[ev.Event]:
        """Hand out the held chunk now (the host is about to run out of audio to play)."""
        return self._settle() if self._block_ended else self._release()

    def _end_audio_block(self) -> None:
        assert self._captions is not None
        rest = self._captions.block_end()
        if self._held is not None:
            held = self._held
            self._held = ev.AudioOut(held.pcm, held.sample_rate, held.sample_format, held.response_id,
                                     held.text + rest)
        else:
            self._carry += rest
        self._block_ended = True

    def _settle(self, *, next_audio: bool = False) -> list[ev.Event]:
        """The event after an audio block's end: it was not cut off, so its last chunk and caption go out (a
        caption whose chunk went already rides on the next block's first chunk, or on 10 ms of silence)."""
        if not self._block_ended:
            return []
        self._block_ended = False
        out = self._release()
        rid = self._response_id or self._last_response_id
        if self._carry and not next_audio and rid is not None and rid not in self._interrupted:
            rate = self.settings.output_rate
            out.append(ev.AudioOut(b"\0\0" * (rate // 100), rate, ev.SampleFormat.INT16, rid, self._carry,
                                   self._caption_sent))
            self._caption_sent += len(self._carry)
            self._carry = ""
        return out

    def _release(self) -> list[ev.Event]:
        held, self._held = self._held, None
        if held is None:
            return []
        out = ev.AudioOut(held.pcm, held.sample_rate, held.sample_format, held.response_id, held.text,
                          self._caption_sent)
        self._caption_sent += len(held.text)
        return [out]

    def _drop_captions(self) -> None:
        self._held, self._carry, self._block_ended, self._caption_sent = None, "", False, 0
        if self._captions is not None:
            self._captions.end_response()

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
            if self.model.supports_tool_choice:
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
