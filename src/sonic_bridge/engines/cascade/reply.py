"""One assistant reply of the cascade: ConverseStream text, cut into sentences, each spoken by Polly as soon as
it is complete, with tool calls in between (each answered by the host through ``send_tool_result``).

The reply owns nothing but its own tasks: the engine cancels it on a barge-in. Recoverable failures are
retried (ConverseStream: the same request again, the text already received skipped; Polly: the sentence again)
up to ``BridgeConfig.max_reconnects`` times, each reported as a recoverable Error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sonic_bridge import events as ev
from sonic_bridge.engines.cascade import converse, polly
from sonic_bridge.engines.cascade.converse import Msg
from sonic_bridge.engines.cascade.sentences import SentenceSplitter
from sonic_bridge.engines.cascade.settings import CascadeSettings
from sonic_bridge.engines.failures import BackendError
from sonic_bridge.settings import SessionSettings

log = logging.getLogger("sonic_bridge.cascade")
MAX_TOOL_ROUNDS = 5


@dataclass
class Timing:
    """When the reply's milestones happened (monotonic seconds; 0: not yet)."""

    final_transcript: float = 0.0
    first_text: float = 0.0
    first_audio: float = 0.0

    def breakdown(self) -> dict[str, float]:
        """Seconds from the final transcript to the first text token and to the first audio."""
        def since(t: float) -> float:
            return round(t - self.final_transcript, 4) if t else -1.0
        return {"first_text": since(self.first_text), "first_audio": since(self.first_audio)}


@dataclass
class ReplyContext:
    """What a reply needs from its engine."""

    clients: Any
    settings: CascadeSettings
    session: SessionSettings
    emit: Callable[[ev.Event], object]
    audio: Callable[[bytes, str, str], None]  # Polly PCM16 at settings.polly_rate, the response id, its words
    ask_tool: Callable[[ev.ToolCall], Awaitable[str]]  # the host's result
    retries: int
    usage: list[int] = field(default_factory=lambda: [0, 0, 0])  # input tokens, output tokens, Polly characters


class Reply:
    def __init__(self, ctx: ReplyContext, response_id: str, turn: int, messages: list[Msg]) -> None:
        self.ctx = ctx
        self.response_id = response_id
        self.turn = turn
        self.messages = messages
        self.spoken: list[str] = []  # sentences that were spoken, in order
        self.tool_lines: list[tuple[str, dict[str, Any], str, str]] = []  # name, arguments, id, result
        self.timing = Timing(final_transcript=time.monotonic())
        self.audio_sent = False
        self.captioned = 0  # characters of captions sent with its audio
        self._speech: asyncio.Queue[str | None] = asyncio.Queue()

    async def run(self) -> None:
        speaker = asyncio.get_running_loop().create_task(self._speak_all(), name="polly")
        try:
            for _round in range(MAX_TOOL_ROUNDS):
                calls = await self._one_round()
                if not calls:
                    break
            self._speech.put_nowait(None)
            await speaker
        finally:
            if not speaker.done():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError, BackendError):
                    await speaker

    async def _one_round(self) -> list[converse.ToolUse]:
        ctx = self.ctx
        splitter = SentenceSplitter()
        text = ""
        calls: list[converse.ToolUse] = []
        call = converse.request(ctx.settings, ctx.session.system_prompt, self.messages, ctx.session.tools,
                                ctx.session.tool_choice)
        received = [0]  # characters of text so far, for a retry to skip
        async for part in self._with_retries(call, lambda: received[0]):
            if isinstance(part, converse.Text):
                if not self.timing.first_text:
                    self.timing.first_text = time.monotonic()
                text += part.text
                received[0] = len(text)
                for sentence in splitter.feed(part.text):
                    self._queue(sentence)
            elif isinstance(part, converse.ToolUse):
                calls.append(part)
            elif isinstance(part, converse.Tokens):
                ctx.usage[0] += part.input
                ctx.usage[1] += part.output
                self._usage(ev.TokenCounts(input_text=part.input, output_text=part.output))
        for sentence in splitter.flush():
            self._queue(sentence)
        if not calls:
            return []
        content: list[dict[str, Any]] = [{"text": text}] if text.strip() else []
        content += [{"toolUse": {"toolUseId": c.tool_use_id, "name": c.name, "input": c.arguments}} for c in calls]
        results = await asyncio.gather(*(ctx.ask_tool(ev.ToolCall(c.name, c.tool_use_id, c.arguments))
                                         for c in calls))
        for c, result in zip(calls, results, strict=True):
            self.tool_lines.append((c.name, c.arguments, c.tool_use_id, result))
        self.messages = [*self.messages, {"role": "assistant", "content": content},
                         {"role": "user", "content": [{"toolResult": {"toolUseId": c.tool_use_id, "text": r}}
                                                      for c, r in zip(calls, results, strict=True)]}]
        return calls

    async def _with_retries(self, call: Any, received: Callable[[], int]) -> AsyncIterator[converse.Part]:
        """The stream's parts; after a recoverable failure the request again, its first ``received()``
        characters of text skipped (they were heard already)."""
        attempt = 0
        while True:
            skip = received()
            try:
                async for part in converse.stream(self.ctx.clients.bedrock, call, self.ctx.settings.reply_timeout_s):
                    if isinstance(part, converse.Text) and skip:
                        cut = min(skip, len(part.text))
                        skip -= cut
                        if cut < len(part.text):
                            yield converse.Text(part.text[cut:])
                        continue
                    yield part
                return
            except BackendError as exc:
                attempt += 1
                if not exc.recoverable or attempt > self.ctx.retries:
                    raise
                self.ctx.emit(ev.Error(exc.code, f"the Nova model: {exc.message} (retrying)", recoverable=True))
                await asyncio.sleep(min(5.0, 0.25 * 2 ** (attempt - 1)))

    def _queue(self, sentence: str) -> None:
        """A complete sentence: the host sees what is coming (as Sonic's speculative text) while Polly speaks it."""
        self.ctx.emit(ev.Transcript(ev.Role.ASSISTANT, ev.Stage.SPECULATIVE, sentence, self.turn))
        self._speech.put_nowait(sentence)

    async def _speak_all(self) -> None:
        while (sentence := await self._speech.get()) is not None:
            speech = await self._speak(sentence)
            if speech.pcm:
                if not self.timing.first_audio:
                    self.timing.first_audio = time.monotonic()
                self.audio_sent = True
                self.ctx.audio(speech.pcm, self.response_id, sentence)
            self.ctx.usage[2] += speech.characters
            self._usage(ev.TokenCounts(output_speech=speech.characters))
            self.spoken.append(sentence)
            self.ctx.emit(ev.Transcript(ev.Role.ASSISTANT, ev.Stage.FINAL, sentence, self.turn))

    async def _speak(self, sentence: str) -> polly.Speech:
        attempt = 0
        while True:
            try:
                return await polly.speak(self.ctx.clients.polly, self.ctx.settings, sentence)
            except BackendError as exc:
                attempt += 1
                if not exc.recoverable or attempt > self.ctx.retries:
                    raise
                self.ctx.emit(ev.Error(exc.code, f"Polly: {exc.message} (retrying)", recoverable=True))
                await asyncio.sleep(min(5.0, 0.25 * 2 ** (attempt - 1)))

    def _usage(self, delta: ev.TokenCounts) -> None:
        """Converse tokens as text tokens; Polly's billed characters in the output_speech count."""
        i, o, chars = self.ctx.usage
        self.ctx.emit(ev.Usage(delta, ev.TokenCounts(input_text=i, output_text=o, output_speech=chars)))
