"""The cascade engine: Transcribe hears the user, Nova answers, Polly speaks; the same host commands in and
the same host events out as the Nova Sonic engine.

One Transcribe stream at a time (a ``Link``: a writer that is the only sender, a reader), fed every host
frame; it is renewed before the service's 4-hour limit at a pause of the user (audio goes to the old stream
until the new one is accepted, so none is lost) and reconnected with backoff on recoverable failures,
counted as the Sonic engine counts them. A partial transcript while the avatar speaks is a barge-in; a final
one starts a ``Reply``. Frames are accounted for as for Sonic: sent when a stream took them, or dropped with
a reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import random
import time
import uuid
from typing import Any

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge.engines.cascade.clients import CascadeClients
from sonic_bridge.engines.cascade.converse import Msg
from sonic_bridge.engines.cascade.reply import Reply, ReplyContext
from sonic_bridge.engines.cascade.transcribe import RATE, Heard, TranscribeStream
from sonic_bridge.engines.failures import BackendError
from sonic_bridge.engines.sonic.history import Message, sanitize, tool_call_line, tool_result_line
from sonic_bridge.engines.sonic.session_manager import PENDING_AUDIO_SECONDS, FailureBudget
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import messages as msg
from sonic_bridge.settings import SessionSettings
from sonic_bridge.worker.activity import Activity
from sonic_bridge.worker.audio import Converter
from sonic_bridge.worker.outbox import Outbox

log = logging.getLogger("sonic_bridge.cascade")
CLOSE_DRAIN_SECONDS = 2.0
KEEPALIVE_SECONDS = 5.0  # no host audio this long: a little silence, so Transcribe does not time out (15 s)
AUDIO_PIECE_SECONDS = 0.1  # reply audio per AudioOut, so a barge-in drops little that was already queued


class Link:
    def __init__(self, number: int, stream: TranscribeStream) -> None:
        self.number = number
        self.stream = stream
        self.opened_at = time.monotonic()
        # (pcm, the host frames it holds: none for keep-alive silence)
        self.queue: asyncio.Queue[tuple[bytes, list[bytes]] | None] = asyncio.Queue()
        self.failure: asyncio.Future[BackendError | None] = asyncio.get_running_loop().create_future()
        self.retired = False
        self.tasks: list[asyncio.Task[None]] = []
        self.last_sent = time.monotonic()

    def fail(self, error: BackendError | None) -> None:
        if not self.failure.done():
            self.failure.set_result(error)


class CascadeEngine:
    def __init__(self, config: BridgeConfig, clients: CascadeClients, outbox: Outbox, *, camera: Any = None,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.backend = clients  # the worker closes it at the end, as a Sonic backend
        self.clients = clients
        self.outbox = outbox
        self.settings = config.cascade
        self.session = config.session
        self.camera = camera  # vision on: the worker's camera, whose newest frames go with every turn
        self.rng = rng or random.Random()
        self.history: list[Message] = list(config.session.history)
        self._to_service = Converter(RATE, ev.SampleFormat.INT16, quality="LQ")
        self._to_host = Converter(config.output_sample_rate, config.output_format)
        self.activity = Activity()
        self._pending: collections.deque[bytes] = collections.deque()
        self._batch: list[bytes] = []  # this tick's user audio, for the current link (end_of_batch)
        self._pending_bytes = 0
        self._pending_limit = int(PENDING_AUDIO_SECONDS * RATE * 2)
        self.sent_frames = 0
        self.dropped_frames = 0
        self.drop_reason = ""
        self._closing = asyncio.Event()
        self.link: Link | None = None
        self._links = 0
        self.failures = FailureBudget()
        self.renewals = 0
        self.reconnects = 0
        self._turn = 0
        self._hearing = False  # a partial result came and its final has not
        self._reply: asyncio.Task[None] | None = None
        self._current: Reply | None = None
        self._tool_waits: dict[str, asyncio.Future[str]] = {}
        self._usage = [0, 0, 0]
        self._user_spoke = False
        self.timings: list[dict[str, float]] = []  # per answered turn: seconds to first text and first audio
        self._fatal = False
        self._playing = ""  # the last finished reply whose audio may still play at the host

    # ------------------------------------------------------------------ commands from the host
    def handle(self, command: msg.Command) -> None:
        if isinstance(command, msg.AudioIn):
            self._audio(command)
            return
        self.end_of_batch()  # audio that came before a command goes out before it
        if isinstance(command, msg.TextIn):
            self._typed(command.text)
        elif isinstance(command, msg.ToolResultIn):
            self._tool_result(command.tool_use_id, command.content)
        elif isinstance(command, msg.SettingsIn):
            self._update_settings(command.session_json)
        elif isinstance(command, msg.CloseIn):
            self._closing.set()

    def _audio(self, frame: msg.AudioIn) -> None:
        pcm = self._to_service.convert(frame.pcm, frame.sample_rate, frame.sample_format)
        if not pcm:
            self.sent_frames += 1  # the resampler holds it back; it goes out with the next frame
            return
        self.activity.user_audio(pcm, time.monotonic())
        link = self.link
        if link is None or self._closing.is_set():
            self._pending.append(pcm)
            self._pending_bytes += len(pcm)
            while self._pending_bytes > self._pending_limit:
                self._pending_bytes -= len(self._pending.popleft())
                self._drop("no Transcribe stream for more than 60 s")
            return
        self._batch.append(pcm)

    def end_of_batch(self) -> None:
        """The audio of one worker tick as one AudioEvent (half the events per second of audio)."""
        if not self._batch:
            return
        frames, self._batch = self._batch, []
        if self.link is None:  # (cannot happen between a tick's reads; kept safe)
            self._pending.extend(frames)
            self._pending_bytes += sum(len(f) for f in frames)
            return
        self.link.queue.put_nowait((b"".join(frames), frames))

    def _drop(self, reason: str) -> None:
        self.dropped_frames += 1
        self.drop_reason = reason

    def _typed(self, text: str) -> None:
        """Typed text: a user turn without a USER transcript (as with Nova Sonic)."""
        self._barge_in()
        self._user_spoke = True
        self._turn += 1
        self.history.append(Message(ev.Role.USER, text))
        self._start_reply()

    def _tool_result(self, tool_use_id: str, content: str) -> None:
        waiter = self._tool_waits.pop(tool_use_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(content)
        else:
            log.info("tool result %s came after its reply ended; kept in the history", tool_use_id)
            self.history.append(Message(ev.Role.ASSISTANT, tool_result_line(tool_use_id, content)))

    def _update_settings(self, session_json: str) -> None:
        try:
            new = SessionSettings.from_json(json.loads(session_json))
        except (TypeError, ValueError) as exc:
            self.outbox.send(ev.Error(errors.BAD_CONFIGURATION, f"update_session refused: {exc}", recoverable=True))
            return
        self.session = dataclasses.replace(new, history=self.session.history)  # the next reply uses them
        self._state(ev.BridgeState.READY, ev.SETTINGS_UPDATED)

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        self._state(ev.BridgeState.CONNECTING)
        while not self._closing.is_set():
            try:
                link = await self._open_link()
            except BackendError as exc:
                if not await self._after_failure(exc):
                    break
                continue
            self._switch_to(link)
            if self._links == 1 and self.session.greeting and not self._user_spoke:
                self._greet(self.session.greeting)
            outcome = await self._serve(link)
            if outcome == "closed":
                break
            assert not isinstance(outcome, str)
            self._retire(link, graceful=False)
            error = outcome or BackendError(errors.SERVICE_ERROR, "Transcribe ended the stream", recoverable=True,
                                            kind="EndOfStream")
            if not await self._after_failure(error):
                break
        await self._close_current()

    async def _open_link(self) -> Link:
        self._links += 1
        stream = await TranscribeStream.open(self.clients.transcribe, self.settings, self.config.connect_timeout)
        link = Link(self._links, stream)
        link.tasks = [asyncio.create_task(self._writer(link), name="transcribe writer"),
                      asyncio.create_task(self._reader(link), name="transcribe reader")]
        return link

    def _switch_to(self, link: Link) -> None:
        self.link = link
        while self._pending:
            pcm = self._pending.popleft()
            link.queue.put_nowait((pcm, [pcm]))
        self._pending_bytes = 0
        self._state(ev.BridgeState.READY)

    async def _after_failure(self, exc: BackendError) -> bool:
        self.link = None
        attempt = self.failures.fail(time.monotonic())
        if not exc.recoverable or self._fatal:
            self.outbox.send(ev.Error(exc.code, exc.message, recoverable=False))
            return False
        if attempt > self.config.max_reconnects:
            self.outbox.send(ev.Error(errors.RECONNECT_LIMIT, f"gave up after {attempt - 1} reconnects without an "
                                      f"answered turn (max_reconnects={self.config.max_reconnects}): {exc.message}",
                                      recoverable=False))
            return False
        self.outbox.send(ev.Error(exc.code, f"Transcribe: {exc.message}", recoverable=True))
        self._state(ev.BridgeState.RECONNECTING, exc.kind or exc.code)
        self.reconnects += 1
        delay = min(10.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + self.rng.random() / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)
        return not self._closing.is_set()

    async def _serve(self, link: Link) -> BackendError | str | None:
        """Run a link until it fails or the host closes; renew it on time (then serve the new one)."""
        while True:
            renew_at = link.opened_at + self.settings.renew_after_s
            closing: asyncio.Future[object] = asyncio.ensure_future(self._closing.wait())
            waiters: set[asyncio.Future[object]] = {closing, link.failure}  # type: ignore[arg-type]
            try:
                await asyncio.wait(waiters, timeout=max(0.0, renew_at - time.monotonic()),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
            if self._closing.is_set():
                return "closed"
            if link.failure.done():
                return link.failure.result()
            new = await self._renew(link)
            if new is not None:
                link = new

    async def _renew(self, old: Link) -> Link | None:
        """A new Transcribe stream at a pause of the user (bounded): the old one keeps taking audio until then."""
        self._state(ev.BridgeState.RENEWING)
        deadline = time.monotonic() + self.settings.renew_force_after_s
        while (self._hearing or self.activity.user_speaking(time.monotonic())) and time.monotonic() < deadline:
            if old.failure.done() or self._closing.is_set():
                return None
            await asyncio.sleep(0.05)
        try:
            new = await self._open_link()
        except BackendError as exc:
            log.warning("Transcribe renewal failed, keeping the current stream: %s", exc.message)
            old.opened_at = time.monotonic() - self.settings.renew_after_s + 5.0
            self._state(ev.BridgeState.READY)
            return None
        self.renewals += 1
        self._switch_to(new)
        self._retire(old, graceful=True)
        return new

    def _retire(self, link: Link, *, graceful: bool) -> None:
        if link.retired:
            return
        link.retired = True
        link.queue.put_nowait(None)
        asyncio.get_running_loop().create_task(self._finish(link, graceful))

    async def _finish(self, link: Link, graceful: bool) -> None:
        with contextlib.suppress(TimeoutError, BackendError, OSError):
            await asyncio.wait_for(asyncio.shield(link.tasks[0]), CLOSE_DRAIN_SECONDS)
            if graceful:
                await asyncio.wait_for(link.stream.end(), CLOSE_DRAIN_SECONDS)
            # The old stream's last results (the end of an utterance) still count; then it ends by itself.
            await asyncio.wait_for(asyncio.shield(link.tasks[1]), CLOSE_DRAIN_SECONDS)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(link.stream.aclose(), CLOSE_DRAIN_SECONDS)

    async def _close_current(self) -> None:
        self._state(ev.BridgeState.CLOSING)
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        for _ in self._pending:
            self._drop("the bridge closed before a stream could take it")
        self._pending.clear()
        link, self.link = self.link, None
        if link is not None:
            self._retire(link, graceful=True)
            await self._finish(link, True)
        self.report_audio()

    # ------------------------------------------------------------------ per-link tasks
    async def _writer(self, link: Link) -> None:
        while True:
            try:
                item = await asyncio.wait_for(link.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                item = (bytes(int(0.1 * RATE) * 2), [])  # the host sends nothing: keep the stream alive
            if item is None:
                return
            pcm, frames = item
            try:
                await link.stream.send(pcm)
            except BackendError as exc:
                for _frame in frames:
                    self._drop("the Transcribe stream failed while sending it")
                self._salvage(link)
                link.fail(exc)
                return
            self.sent_frames += len(frames)

    def _salvage(self, link: Link) -> None:
        """Host audio still queued for a failed stream goes to the next one, ahead of newer audio."""
        left: list[bytes] = []
        while not link.queue.empty():
            item = link.queue.get_nowait()
            if item is not None:
                left.extend(item[1])
        for pcm in reversed(left):
            self._pending.appendleft(pcm)
            self._pending_bytes += len(pcm)

    async def _reader(self, link: Link) -> None:
        try:
            async for heard in link.stream.results():
                self._heard(heard)
        except BackendError as exc:
            self._salvage(link)
            link.fail(exc)
            return
        self._salvage(link)
        link.fail(None)

    # ------------------------------------------------------------------ turns
    def _heard(self, heard: Heard) -> None:
        speaking = self._reply is not None and not self._reply.done()
        if speaking or self.activity.model_speaking(time.monotonic()):
            self._barge_in()
        if heard.partial:
            self._hearing = True
            self.outbox.send(ev.Transcript(ev.Role.USER, ev.Stage.SPECULATIVE, heard.text, self._turn + 1))
            return
        self._hearing = False
        self._turn += 1
        self._user_spoke = True
        self.outbox.send(ev.Transcript(ev.Role.USER, ev.Stage.FINAL, heard.text, self._turn))
        self.history.append(Message(ev.Role.USER, heard.text))
        self._start_reply()

    def _barge_in(self) -> None:
        """The user speaks over the avatar: the reply stops, its queued audio is dropped at the host."""
        reply = self._current
        if reply is None:
            if self._playing and self.activity.model_speaking(time.monotonic()):
                # The reply ended, but its audio still plays at the host: that stops, as with Sonic.
                self._to_host.reset()
                self.activity.model_stopped(time.monotonic())
                self.outbox.send(ev.Interrupted(self._playing))
            self._playing = ""
            return
        self._current = None
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        for waiter in self._tool_waits.values():
            waiter.cancel()
        self._tool_waits.clear()
        self._to_host.reset()
        self.activity.model_stopped(time.monotonic())
        self._remember(reply)
        self.outbox.send(ev.Interrupted(reply.response_id))
        self.outbox.send(ev.TurnEnded("INTERRUPTED", reply.response_id))

    def _greet(self, instruction: str) -> None:
        self._start_reply([{"role": "user", "content": [{"text": instruction}]}])

    def _start_reply(self, messages: list[Msg] | None = None) -> None:
        ctx = ReplyContext(self.clients, self.settings, self.session, self.outbox.send, self._audio_out,
                           self._ask_tool, self.config.max_reconnects, self._usage)
        reply = Reply(ctx, str(uuid.uuid4()), self._turn, messages or self._messages())
        self._current = reply
        self._reply = asyncio.get_running_loop().create_task(self._answer(reply, messages is None), name="reply")

    def _messages(self) -> list[Msg]:
        """The conversation as ConverseStream takes it: alternating roles from the user, merged and capped."""
        return [{"role": "user" if m.role is ev.Role.USER else "assistant", "content": [{"text": m.text}]}
                for m in sanitize(self.history)]

    async def _answer(self, reply: Reply, with_frames: bool) -> None:
        if with_frames:
            images = await self._frames()
            if images and reply.messages:
                last = reply.messages[-1]
                reply.messages[-1] = {"role": last["role"], "content": [{"image": j} for j in images]
                                      + last["content"]}
        try:
            await reply.run()
        except asyncio.CancelledError:
            return
        except BackendError as exc:
            self._current = None
            self._remember(reply)
            if exc.recoverable:
                self.outbox.send(ev.Error(exc.code, f"the reply failed: {exc.message}", recoverable=True))
                self.outbox.send(ev.TurnEnded("ERROR", reply.response_id))
                return
            self._fatal = True
            self.outbox.send(ev.Error(exc.code, exc.message, recoverable=False))
            self._closing.set()
            return
        except Exception as exc:  # a bug: reported, the session goes on with the next turn
            log.exception("the reply failed")
            self._current = None
            self.outbox.send(ev.Error(errors.INTERNAL, f"the reply failed: {type(exc).__name__}: {exc}",
                                      recoverable=True))
            return
        self._current = None
        tail = self._to_host.flush()
        if tail:
            self.outbox.send(ev.AudioOut(tail, self.config.output_sample_rate, self.config.output_format,
                                         reply.response_id))
        self._remember(reply)
        self._playing = reply.response_id
        self.outbox.send(ev.TurnEnded("END_TURN", reply.response_id))
        self.failures.succeeded()
        breakdown = reply.timing.breakdown()
        self.timings.append(breakdown)
        log.info("turn %d: first text after %.3f s, first audio after %.3f s", reply.turn, breakdown["first_text"],
                 breakdown["first_audio"])

    def _remember(self, reply: Reply) -> None:
        """What the avatar said (and which tools it used) goes into the history the next turns see."""
        for name, arguments, tool_use_id, result in reply.tool_lines:
            self.history.append(Message(ev.Role.ASSISTANT, tool_call_line(name, arguments)))
            self.history.append(Message(ev.Role.ASSISTANT, tool_result_line(tool_use_id, result)))
        if reply.spoken:
            self.history.append(Message(ev.Role.ASSISTANT, " ".join(reply.spoken)))

    async def _frames(self) -> list[bytes]:
        """The newest camera frames for this turn (vision on and a model that takes images), oldest first."""
        if self.camera is None or not self.settings.takes_images:
            return []
        from sonic_bridge.vision.settings import image_limit

        vision = self.config.vision
        try:
            await self.camera.sample()
        except Exception:
            log.exception("could not sample a camera frame for the turn")
        count = self.settings.frames_per_turn or image_limit(self.settings.model_id)
        now = time.monotonic()
        shots = [s for s in self.camera.window.pick(min(count, vision.window))
                 if now - s.captured <= vision.stale_after_s]
        return [s.jpeg for s in shots]

    def _audio_out(self, pcm16: bytes, response_id: str, sentence: str) -> None:
        """A sentence's audio for the host; its first chunk carries the sentence as its caption (Polly's audio
        is the sentence: the words on screen change with the voice, sentence by sentence)."""
        reply = self._current
        if reply is None or reply.response_id != response_id:
            return  # a reply that was interrupted meanwhile: its audio must not be heard
        out = self._to_host.convert(pcm16, self.settings.polly_rate, ev.SampleFormat.INT16)
        piece = max(1, int(AUDIO_PIECE_SECONDS * self.config.output_sample_rate)) * self.config.output_format.width
        caption = (" " if reply.captioned else "") + sentence
        for i in range(0, len(out), piece):
            text = caption if i == 0 else ""
            event = ev.AudioOut(out[i : i + piece], self.config.output_sample_rate, self.config.output_format,
                                response_id, text, reply.captioned)
            reply.captioned += len(text)
            self.activity.model_audio(event.duration, time.monotonic())
            self.outbox.send(event)

    async def _ask_tool(self, call: ev.ToolCall) -> str:
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tool_waits[call.tool_use_id] = waiter
        self.outbox.send(call)
        return await waiter

    # ------------------------------------------------------------------ reporting
    def _state(self, state: ev.BridgeState, detail: str = "") -> None:
        self.outbox.send(ev.StateChanged(state, detail))

    def report_audio(self) -> None:
        self.outbox.send(msg.AudioAccounted(self.sent_frames, self.dropped_frames, self.drop_reason))
