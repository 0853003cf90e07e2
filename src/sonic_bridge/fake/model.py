"""The fake Nova Sonic: one stream's behaviour, shared by every door (direct, SDK transport, TLS server).

It is driven by plain calls with the time passed in: ``feed`` an input event, ``pump`` the output
that is due, ``next_due`` says when to pump again. Turn detection is measured in audio time (samples
received), so the same input gives the same turns on a loaded machine as on an idle one.

Outputs are JSON event dicts, ``FakeError`` (an exception frame of the service) and the markers
``END`` (the service ends the response stream), ``TRUNCATE`` (a frame cut short) and ``DISCONNECT``
(the connection drops), which each door renders in its own way.
"""

from __future__ import annotations

import base64
import collections
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from sonic_bridge.engines.sonic.models import SERVICE_RATES, model_info
from sonic_bridge.engines.sonic.protocol import INTERRUPTED_MARKER
from sonic_bridge.fake import looking, speech
from sonic_bridge.fake.scenario import Scenario, TurnPlan

END = "END"
TRUNCATE = "TRUNCATE"
DISCONNECT = "DISCONNECT"
PAUSE_BY_SENSITIVITY = {"HIGH": 1.5, "MEDIUM": 1.75, "LOW": 2.0}
HISTORY_ERROR = "Chat history should be sent completely before streaming audio."
INVALID_INPUT = "Invalid input request, please fix your input and try again."
ECHO_LIMIT_S = 15.0  # a reply echoes at most this much of the user's turn: a long turn holds no more memory
TYPED_ECHO_CHARS = 500  # a typed turn's reply echoes at most this many of its characters
TYPED_CHAR_S = 0.06  # a typed character "spoken" in the reply audio
# What the fake says to an instruction typed while a tool call waits for its result (a filler nudge).
STILL_WORKING = "I am still working on that, one moment please."


class FakeError(Exception):
    """An exception frame of the service: ``kind`` is its exception name, e.g. ValidationException."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeError) and (self.kind, self.message) == (other.kind, other.message)

    def __hash__(self) -> int:
        return hash((self.kind, self.message))


Output = dict[str, Any] | FakeError | str


class FakeSonic:
    def __init__(self, model_id: str, scenario: Scenario, *, now: float, rng: random.Random | None = None,
                 next_turn: Callable[[], int] | None = None) -> None:
        self.model = model_info(model_id, warn=False)
        self.sc = scenario
        self.rng = rng or random.Random(scenario.seed)
        self.opened_at = now
        self.last_input = now
        self.last_voice = now
        self.session_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        self._out: collections.deque[tuple[float, Output]] = collections.deque()
        self._script: collections.deque[tuple[float, Output]] = collections.deque()  # (delay, item)
        self._script_due = 0.0
        self.failed = False
        self.ended = False
        # input state
        self.phase = "session"  # session, prompt, system, history, audio, prompt_closed, session_closed
        self.prompt = ""
        self.input_rate = 16000
        self.output_rate = 24000
        self.pause = PAUSE_BY_SENSITIVITY["MEDIUM"]
        # What this stream was started with, as scenario.reply_names_context names it.
        self.voice = "matthew"
        self.sensitivity = "default"
        self.temperature: object = None
        self.tool_choice = "auto"
        self.system_text = ""
        self.history_texts: list[tuple[str, str]] = []  # (role, text) of the replayed history
        self._filling = False  # a filler reply plays: the tool's answer follows it instead of cutting it
        self.ballast: npt.NDArray[np.uint8] | None = None  # scenario allocate_mb: memory a bad worker holds
        self._allocate: tuple[float, int] | None = None  # (when, MiB) of that allocation
        self.tools: set[str] = set()
        self.look_tool: str | None = None
        self.block: dict[str, Any] | None = None
        self.block_text: list[str] = []
        self.block_bytes = 0  # UTF-8 size of block_text, capped by scenario.max_content_bytes
        self.audio_name = ""
        self.history_blocks = 0
        self.completion_id = ""
        # turn detection (audio time, seconds)
        self._frame = 160
        self._leftover = b""
        self._utterance: list[npt.NDArray[np.float32]] = []
        self._utterance_samples = 0  # all of the turn's samples, kept or not (the echo keeps ECHO_LIMIT_S)
        self._in_speech = False
        self._silence = 0.0
        self._voice_run = 0.0
        self.turn = 0
        # Turn numbers (and so the scenario's per-turn plans) may run across the streams of one endpoint.
        self._next_turn = next_turn or (lambda: self.turn + 1)
        self.speaking = False  # reply audio is being sent
        self._audio_id = ""
        self.awaiting_tool: str | None = None
        self._tool_turn: tuple[int, float, npt.NDArray[np.float32], TurnPlan] | None = None
        self.usage_total = [0, 0, 0, 0]
        self.input_events = 0

    @property
    def buffered_input(self) -> int:
        """Bytes of input held until a later event completes them (the open text block, a partial frame)."""
        return self.block_bytes + len(self._leftover)

    # ------------------------------------------------------------------ input
    def feed(self, event: Any, now: float) -> None:
        """One decoded input event. Any shape is answered: a bad one fails this stream, never the caller."""
        if self.failed or self.ended:
            return
        self.last_input = now
        self.input_events += 1
        try:
            ((name, body),) = event["event"].items()
        except (KeyError, AttributeError, ValueError, TypeError):
            self._fail(FakeError("ValidationException", "Malformed input event."), now)
            return
        handler = getattr(self, f"_in_{name}", None) if isinstance(name, str) else None
        if handler is None:
            self._fail(FakeError("ValidationException", f"Unknown input event type: {str(name)[:100]}"), now)
            return
        if not isinstance(body, dict):
            self._fail(FakeError("ValidationException", f"Invalid {name} event: its body must be an object"), now)
            return
        try:
            handler(body, now)
        except FakeError as err:
            self._fail(err, now)
        except Exception as exc:  # a field of the wrong type anywhere: the service refuses the event
            self._fail(FakeError("ValidationException", f"Invalid {name} event: {type(exc).__name__}: {exc}"[:300]),
                       now)

    def end_input(self, now: float) -> None:
        """The client closed its side of the stream."""
        if self.failed or self.ended:
            return
        if self.phase not in ("prompt_closed", "session_closed") and self.prompt:
            self._fail(
                FakeError(
                    "ValidationException",
                    f"RequestId={uuid.UUID(int=self.rng.getrandbits(128))} : "
                    f"Error(s):\nError 1 : The following prompts were not closed: [{self.prompt}]",
                ),
                now,
            )
            return
        self._emit(now, END)
        self.ended = True

    def _in_sessionStart(self, body: dict[str, Any], now: float) -> None:
        self._expect("session")
        if "endpointingSensitivity" in body:
            raise FakeError(
                "ValidationException",
                "Invalid sessionStart: 'endpointingSensitivity' is not a valid "
                "field; use turnDetectionConfiguration.endpointingSensitivity",
            )
        turn = body.get("turnDetectionConfiguration")
        if turn is not None:
            if not self.model.supports_turn_detection:
                raise FakeError("ValidationException", "turnDetectionConfiguration is not supported by this model")
            sensitivity = turn.get("endpointingSensitivity")
            if sensitivity not in PAUSE_BY_SENSITIVITY:
                raise FakeError("ValidationException", f"Invalid endpointingSensitivity: {sensitivity}")
            self.pause = PAUSE_BY_SENSITIVITY[sensitivity]
            self.sensitivity = sensitivity
        self.temperature = body.get("inferenceConfiguration", {}).get("temperature")
        self.phase = "prompt"

    def _in_promptStart(self, body: dict[str, Any], now: float) -> None:
        self._expect("prompt")
        self.prompt = body["promptName"]
        audio = body.get("audioOutputConfiguration", {})
        voice = audio.get("voiceId", "matthew")
        if voice not in self.model.voices:
            raise FakeError("ValidationException", f"Received invalid voiceId: {voice}")
        self.voice = voice
        choice = body.get("toolConfiguration", {}).get("toolChoice", {"auto": {}})
        self.tool_choice = next(iter(choice), "auto") if choice.get("tool") is None else choice["tool"]["name"]
        self.output_rate = int(audio.get("sampleRateHertz", 24000))
        if self.output_rate not in SERVICE_RATES:
            raise FakeError("ValidationException", f"Invalid output sampleRateHertz: {self.output_rate}")
        tools = body.get("toolConfiguration", {}).get("tools", [])
        self.tools = {t["toolSpec"]["name"] for t in tools}
        self.look_tool = looking.look_tool_in(tools)  # called when a turn asks to look
        self.phase = "system"

    def _in_contentStart(self, body: dict[str, Any], now: float) -> None:
        self._check_prompt(body)
        if self.block is not None:
            raise FakeError("ValidationException", "A content block was started before the previous one ended.")
        kind, role, interactive = body["type"], body.get("role"), bool(body.get("interactive"))
        if kind == "AUDIO":
            if self.phase not in ("history",) or self.audio_name:
                raise FakeError("ValidationException", "The system prompt must come before the audio content.")
            cfg = body["audioInputConfiguration"]
            self.input_rate = int(cfg["sampleRateHertz"])
            if self.input_rate not in SERVICE_RATES or cfg.get("channelCount", 1) != 1:
                raise FakeError("ValidationException", "Invalid audioInputConfiguration.")
            self._frame = self.input_rate // 100
            self.audio_name = body["contentName"]
            self.phase = "audio"
            return
        if kind == "TEXT":
            if self.phase == "system":
                if role != "SYSTEM":
                    raise FakeError("ValidationException", "The first content must be the SYSTEM prompt.")
            elif self.phase == "history":
                if interactive:
                    raise FakeError("ValidationException", "Interactive text needs the audio content to be started.")
                if not self.history_blocks and role != "USER":
                    raise FakeError(
                        "ValidationException", "The first message in the chat history must be from the user."
                    )
                self.history_blocks += 1
            elif self.phase == "audio":
                if not interactive:
                    raise FakeError("ValidationException", HISTORY_ERROR)
            else:
                raise FakeError("ValidationException", "The prompt is closed.")
        elif kind == "TOOL":
            if self.phase != "audio":
                raise FakeError("ValidationException", INVALID_INPUT)
            tool_use_id = body["toolResultInputConfiguration"]["toolUseId"]
            if tool_use_id != self.awaiting_tool:
                raise FakeError("ValidationException", INVALID_INPUT)
        else:
            raise FakeError("ValidationException", f"Invalid content type: {kind}")
        self.block = body
        self.block_text = []
        self.block_bytes = 0

    def _in_textInput(self, body: dict[str, Any], now: float) -> None:
        self._check_prompt(body)
        if self.block is None or self.block["contentName"] != body["contentName"] or self.block["type"] != "TEXT":
            raise FakeError("ValidationException", "textInput outside its TEXT content block.")
        self._hold(str(body["content"]))

    def _in_toolResult(self, body: dict[str, Any], now: float) -> None:
        self._check_prompt(body)
        if self.block is None or self.block["type"] != "TOOL" or self.block["contentName"] != body["contentName"]:
            raise FakeError("ValidationException", INVALID_INPUT)
        self._hold(str(body["content"]))

    def _hold(self, text: str) -> None:
        """Text of the open block, kept until its contentEnd: refused past the content size limit."""
        size = len(text.encode("utf-8", "surrogatepass"))
        if self.block_bytes + size > self.sc.max_content_bytes:
            assert self.block is not None
            raise FakeError("ValidationException", f"Content {self.block['contentName']} is larger than "
                            f"{self.sc.max_content_bytes} bytes; send less text per content block.")
        self.block_text.append(text)
        self.block_bytes += size

    def _in_contentEnd(self, body: dict[str, Any], now: float) -> None:
        self._check_prompt(body)
        name = body["contentName"]
        if self.block is not None and self.block["contentName"] == name:
            block, text = self.block, "".join(self.block_text)
            self.block, self.block_text, self.block_bytes = None, [], 0
            if block["type"] == "TEXT" and block.get("role") == "SYSTEM" and self.phase == "system":
                self.phase = "history"
                self.system_text = text
                self.completion_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
                self._emit(now + self.sc.scaled(0.05), self._ev("completionStart", {}))
            elif block["type"] == "TEXT" and self.phase == "history":
                self.history_texts.append((str(block.get("role")), text))
            elif block["type"] == "TEXT" and block.get("interactive") and self.model.supports_text_input:
                self._start_text_turn(text, now)
            elif block["type"] == "TOOL":
                self._tool_answered(text, now)
            return
        if name == self.audio_name and self.phase == "audio":
            self.phase = "audio_closed"
            return
        raise FakeError("ValidationException", f"contentEnd for unknown content {name}.")

    def _in_audioInput(self, body: dict[str, Any], now: float) -> None:
        self._check_prompt(body)
        if self.phase != "audio" or body["contentName"] != self.audio_name or self.block is not None:
            raise FakeError("ValidationException", HISTORY_ERROR)
        pcm = base64.b64decode(body["content"], validate=True)
        self._listen(self._leftover + pcm, now)

    def _in_promptEnd(self, body: dict[str, Any], now: float) -> None:
        self._check_prompt(body)
        if self.block is not None:
            raise FakeError("ValidationException", "promptEnd with a content block still open.")
        self.phase = "prompt_closed"
        self._script.clear()
        self.speaking = False
        self._emit(now, self._ev("completionEnd", {"stopReason": "END_TURN"}))

    def _in_sessionEnd(self, body: dict[str, Any], now: float) -> None:
        if self.phase != "prompt_closed":
            raise FakeError(
                "ValidationException",
                f"RequestId={uuid.UUID(int=self.rng.getrandbits(128))} : "
                f"Error(s):\nError 1 : The following prompts were not closed: [{self.prompt}]",
            )
        self.phase = "session_closed"

    # ------------------------------------------------------------------ turn detection
    def _listen(self, pcm: bytes, now: float) -> None:
        frame_bytes = self._frame * 2
        usable = len(pcm) - len(pcm) % frame_bytes
        self._leftover = pcm[usable:]
        samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float32) / 32768.0
        frames = samples.reshape(-1, self._frame)
        levels = np.sqrt(np.mean(frames * frames, axis=1)) if len(frames) else np.zeros(0, np.float32)
        dt = self._frame / self.input_rate
        keep = int(ECHO_LIMIT_S * self.input_rate)
        for frame, level in zip(frames, levels.tolist(), strict=True):
            voiced = level > self.sc.speech_threshold
            if voiced:
                self.last_voice = now
                self._voice_run += dt
                if self.speaking and self._voice_run >= self.sc.barge_in_ms / 1000:
                    self._barge_in(now)
            else:
                self._voice_run = 0.0
            if voiced and not self._in_speech:
                self._in_speech = True
                self._silence = 0.0
            if self._in_speech:
                if self._utterance_samples < keep:
                    self._utterance.append(frame)
                self._utterance_samples += len(frame)
                self._silence = 0.0 if voiced else self._silence + dt
                if self._silence >= self.sc.scaled(self.pause) - 1e-9:  # float sums of 10 ms steps
                    self._end_of_turn(now)

    def _end_of_turn(self, now: float) -> None:
        self._in_speech = False
        trailing = int(self._silence * self.input_rate)
        audio = np.concatenate(self._utterance)
        spoken = max(0, self._utterance_samples - trailing)
        self._utterance, self._utterance_samples = [], 0
        audio = audio[:spoken]
        self.turn = self._next_turn()
        seconds = spoken / self.input_rate
        words = speech.hear(audio, self.input_rate)  # audio made by speech.say carries words
        self._emit_block(
            now, "TEXT", "USER", "FINAL", words or f"turn {self.turn}: {seconds:.1f} seconds of speech", "PARTIAL_TURN"
        )
        plan = looking.with_look(self.sc.plan(self.turn), words, self.look_tool)
        self._respond(now, audio, plan, f"You spoke for {seconds:.1f} seconds in turn {self.turn}.")

    def _start_text_turn(self, text: str, now: float) -> None:
        """Interactive text: no USER transcript (that block is the transcript of speech), a reply that echoes it.

        Text while a tool call waits for its result is an instruction to fill the wait (the 2.5 prompting
        guide's nudge): a short reply says it is still working; the call stays open."""
        if self.awaiting_tool is not None and self._tool_turn is not None:
            self._filling = True
            self._schedule_reply(now + self._thinking(TurnPlan()), self._spell(STILL_WORKING), STILL_WORKING,
                                 TurnPlan())
            return
        self.turn = self._next_turn()
        words = text if len(text) <= TYPED_ECHO_CHARS else text[:TYPED_ECHO_CHARS] + "..."
        plan = looking.with_look(self.sc.plan(self.turn), text, self.look_tool)
        self._respond(now, self._spell(words), plan, f'You wrote "{words}" in turn {self.turn}.')

    def _spell(self, text: str) -> npt.NDArray[np.float32]:
        """The typed words as audio, as a voice reply echoes the voice: one short tone per character."""
        step = int(TYPED_CHAR_S * self.input_rate)
        count = min(max(1, len(text)), int(ECHO_LIMIT_S / TYPED_CHAR_S))
        t = np.arange(step) / self.input_rate
        tones = [np.zeros(step) if ch.isspace() else 0.3 * np.sin(2 * np.pi * (200 + 15 * (ord(ch) % 40)) * t)
                 for ch in text[:count] or " "]
        return np.concatenate(tones).astype(np.float32)

    # ------------------------------------------------------------------ responses
    def _respond(self, now: float, audio: npt.NDArray[np.float32], plan: TurnPlan, echo: str) -> None:
        if plan.allocate_mb:  # after the user's transcript has had time to reach the host
            self._allocate = (now + self.sc.scaled(0.5), plan.allocate_mb)
            return
        if plan.fault == "throttle":
            self._fail(FakeError("ThrottlingException", "Too many requests, please wait before trying again."), now)
            return
        if plan.tool and plan.tool in self.tools:
            tool_use_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
            self.awaiting_tool = tool_use_id
            self._tool_turn = (self.turn, len(audio) / self.input_rate, audio, plan)
            cid = self._cid()
            think = self._thinking(plan)
            self._emit(
                now + think,
                self._ev(
                    "contentStart",
                    {
                        "contentId": cid,
                        "type": "TOOL",
                        "role": "TOOL",
                        "toolUseOutputConfiguration": {"mediaType": "application/json"},
                    },
                ),
            )
            self._emit(
                now + think,
                self._ev(
                    "toolUse",
                    {
                        "contentId": cid,
                        "role": "TOOL",
                        "toolName": plan.tool,
                        "toolUseId": tool_use_id,
                        "content": json.dumps(plan.arguments),
                    },
                ),
            )
            self._emit(
                now + think, self._ev("contentEnd", {"contentId": cid, "type": "TOOL", "stopReason": "TOOL_USE"})
            )
            if plan.fault in ("model_stream_error", "truncated_frame", "disconnect"):
                # A fault on a tool turn: the stream fails while the call waits for its result.
                self._script = collections.deque([(0.0, _fault_output(plan.fault)), (0.0, END)])
                self._script_due = now + think + self.sc.scaled(0.2)
            return
        text = plan.reply_text or echo
        self._schedule_reply(now + self._thinking(plan), audio, text, plan)

    def _tool_answered(self, result: str, now: float) -> None:
        self.awaiting_tool = None
        if self._tool_turn is None:
            return
        _, _, audio, plan = self._tool_turn
        self._tool_turn = None
        if plan.tool is not None and plan.tool == self.look_tool:
            # A look: the reply speaks the answer, in words speech.hear can read back.
            text = looking.spoken_result(result)
            self._schedule_reply(now + self._thinking(TurnPlan()), speech.say(text[:240], self.input_rate), text, plan)
            return
        follow = self._filling and bool(self._script)  # a filler still plays: the answer comes after it
        self._filling = False
        self._schedule_reply(now + self._thinking(TurnPlan()), audio, f"The tool said: {result}", plan,
                             after_current=follow)

    def _thinking(self, plan: TurnPlan) -> float:
        lo, hi = self.sc.thinking_ms
        extra = 3.0 if plan.fault == "slow" else 0.0
        return self.sc.scaled(self.rng.uniform(lo, hi) / 1000 + extra)

    def _schedule_reply(self, start: float, audio: npt.NDArray[np.float32], text: str, plan: TurnPlan, *,
                        after_current: bool = False) -> None:
        if self.sc.reply_names_context:
            text = f"{text} {self._context()}"
        out = soxr.resample(audio, self.input_rate, self.output_rate) if self.input_rate != self.output_rate else audio
        pcm = (np.clip(out, -1, 1) * 32767).astype("<i2").tobytes()
        chunk = max(2, int(self.output_rate * self.sc.audio_chunk_ms / 1000) * 2)
        interval = self.sc.scaled(self.sc.audio_chunk_ms / 1000 / self.sc.speed)
        spec, audio_id = self._cid(), self._cid()
        self._audio_id = audio_id
        script: list[tuple[float, Output]] = [
            (
                0.0,
                self._ev(
                    "contentStart",
                    {
                        "contentId": spec,
                        "type": "TEXT",
                        "role": "ASSISTANT",
                        "additionalModelFields": json.dumps({"generationStage": "SPECULATIVE"}),
                        "textOutputConfiguration": {"mediaType": "text/plain"},
                    },
                ),
            ),
            (0.0, self._ev("textOutput", {"contentId": spec, "role": "ASSISTANT", "content": text})),
            (0.0, self._ev("contentEnd", {"contentId": spec, "type": "TEXT", "stopReason": "PARTIAL_TURN"})),
            (0.0, "SPEAKING"),
            (
                0.0,
                self._ev(
                    "contentStart",
                    {
                        "contentId": audio_id,
                        "type": "AUDIO",
                        "role": "ASSISTANT",
                        "audioOutputConfiguration": {
                            "mediaType": "audio/lpcm",
                            "sampleRateHertz": self.output_rate,
                            "sampleSizeBits": 16,
                            "encoding": "base64",
                            "channelCount": 1,
                        },
                    },
                ),
            ),
        ]
        pieces = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)] or [b"\0\0"]
        for index, piece in enumerate(pieces):
            if plan.fault in ("model_stream_error", "truncated_frame", "disconnect") and index == len(pieces) // 2:
                script.append((interval, _fault_output(plan.fault)))
                script.append((0.0, END))
                break
            script.append(
                (
                    interval if index else 0.0,
                    self._ev("audioOutput", {"contentId": audio_id, "content": base64.b64encode(piece).decode()}),
                )
            )
        else:
            speech_tokens = max(1, len(pcm) // 1920)
            script += [
                (interval, self._ev("contentEnd", {"contentId": audio_id, "type": "AUDIO", "stopReason": "END_TURN"})),
                (0.0, "SILENT"),
                *self._block_script("TEXT", "ASSISTANT", "FINAL", text, "END_TURN"),
                (0.0, self._usage(speech_tokens, len(text) // 4)),
            ]
        if after_current and self._script:
            script[0] = (self.sc.scaled(0.2), script[0][1])  # a short pause after the reply that plays
            self._script.extend(script)
            return
        self._script = collections.deque(script)
        self._script_due = start

    def _context(self) -> str:
        last_user = next((text for role, text in reversed(self.history_texts) if role == "USER"), "")
        tools = ",".join(sorted(self.tools)) or "none"
        return (
            f"[voice {self.voice}, turn sensitivity {self.sensitivity}, tools {tools}, "
            f"tool choice {self.tool_choice}, temperature {self.temperature}, {len(self.history_texts)} history "
            f"messages, last user {last_user[:80]!r}, system prompt {self.system_text[:80]!r}]"
        )

    def _barge_in(self, now: float) -> None:
        """User voice during reply audio: end the AUDIO block, send the interrupted marker, listen on."""
        self._script.clear()
        self.speaking = False
        self._emit(
            now, self._ev("contentEnd", {"contentId": self._audio_id, "type": "AUDIO", "stopReason": "END_TURN"})
        )
        for _, item in self._block_script("TEXT", "ASSISTANT", "FINAL", INTERRUPTED_MARKER, "INTERRUPTED"):
            self._emit(now, item)

    # ------------------------------------------------------------------ output
    def pump(self, now: float) -> list[Output]:
        self._check_limits(now)
        if self._allocate is not None and self._allocate[0] <= now:
            self.ballast = np.ones(self._allocate[1] << 20, np.uint8)  # touched pages: resident memory
            self._allocate = None
        while self._script and self._script_due <= now:
            _delay, item = self._script.popleft()
            if item == "SPEAKING":
                self.speaking = True
            elif item == "SILENT":
                self.speaking = False
            else:
                self._out.append((self._script_due, item))
                if item == END or isinstance(item, FakeError) or item in (TRUNCATE, DISCONNECT):
                    self.failed = True
            if self._script:
                self._script_due += self._script[0][0]
        ready: list[Output] = []
        while self._out and self._out[0][0] <= now:
            ready.append(self._out.popleft()[1])
        return ready

    def next_due(self) -> float | None:
        times = [t for t, _ in list(self._out)[:1]]
        if self._script:
            times.append(self._script_due)
        if not (self.failed or self.ended):
            times += [
                self.opened_at + self.sc.scaled(self.sc.connection_limit_s),
                self.last_input + self.sc.scaled(self.sc.input_timeout_s),
            ]
            if self.phase == "audio":
                times.append(self.last_voice + self.sc.scaled(self.sc.silence_limit_s))
        return min(times) if times else None

    def _check_limits(self, now: float) -> None:
        if self.failed or self.ended:
            return
        if now - self.opened_at >= self.sc.scaled(self.sc.connection_limit_s):
            self._fail(
                FakeError(
                    "ModelTimeoutException", "Model has timed out in processing the request. Try your request again."
                ),
                now,
            )
        elif now - self.last_input >= self.sc.scaled(self.sc.input_timeout_s):
            self._fail(FakeError("ValidationException", "Timed out waiting for input events"), now)
        elif self.phase == "audio" and now - self.last_voice >= self.sc.scaled(self.sc.silence_limit_s):
            self._fail(
                FakeError(
                    "ValidationException",
                    "InternalErrorCode=531::RST_STREAM closed stream. HTTP/2 error code: NO_ERROR",
                ),
                now,
            )

    # ------------------------------------------------------------------ helpers
    def _fail(self, error: FakeError, now: float) -> None:
        self._script.clear()
        self.speaking = False
        self.failed = True
        self._emit(now, error)
        self._emit(now, END)

    def _expect(self, phase: str) -> None:
        if self.phase != phase:
            raise FakeError("ValidationException", f"Unexpected event order: expected the {phase} event first.")

    def _check_prompt(self, body: dict[str, Any]) -> None:
        if self.phase in ("session", "prompt"):
            raise FakeError("ValidationException", "Content events need a started prompt.")
        if body.get("promptName") != self.prompt:
            raise FakeError("ValidationException", f"Unknown promptName: {body.get('promptName')}")

    def _cid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    def _ev(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        base = {"sessionId": self.session_id, "promptName": self.prompt, "completionId": self.completion_id}
        return {"event": {name: {**base, **body}}}

    def _emit(self, at: float, item: Output) -> None:
        if self._out and self._out[-1][0] > at:
            at = self._out[-1][0]  # output stays in order
        self._out.append((at, item))

    def _block_script(self, kind: str, role: str, stage: str, text: str, stop: str) -> list[tuple[float, Output]]:
        cid = self._cid()
        return [
            (
                0.0,
                self._ev(
                    "contentStart",
                    {
                        "contentId": cid,
                        "type": kind,
                        "role": role,
                        "additionalModelFields": json.dumps({"generationStage": stage}),
                        "textOutputConfiguration": {"mediaType": "text/plain"},
                    },
                ),
            ),
            (0.0, self._ev("textOutput", {"contentId": cid, "role": role, "content": text})),
            (0.0, self._ev("contentEnd", {"contentId": cid, "type": kind, "stopReason": stop})),
        ]

    def _emit_block(self, now: float, kind: str, role: str, stage: str, text: str, stop: str) -> None:
        for _, item in self._block_script(kind, role, stage, text, stop):
            self._emit(now, item)

    def _usage(self, speech_tokens: int, text_tokens: int) -> dict[str, Any]:
        delta = [speech_tokens, 3, speech_tokens, text_tokens]
        self.usage_total = [a + b for a, b in zip(self.usage_total, delta, strict=True)]
        t = self.usage_total

        def part(v: list[int]) -> dict[str, Any]:
            return {
                "input": {"speechTokens": v[0], "textTokens": v[1]},
                "output": {"speechTokens": v[2], "textTokens": v[3]},
            }

        return self._ev(
            "usageEvent",
            {
                "details": {"delta": part(delta), "total": part(t)},
                "totalInputTokens": t[0] + t[1],
                "totalOutputTokens": t[2] + t[3],
                "totalTokens": sum(t),
            },
        )


def _fault_output(fault: str) -> Output:
    if fault == "model_stream_error":
        return FakeError(
            "ModelStreamErrorException", "An error occurred while streaming the response. Retry your request."
        )
    return TRUNCATE if fault == "truncated_frame" else DISCONNECT
