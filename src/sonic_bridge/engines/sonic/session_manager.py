"""The session manager inside the worker: one live stream at a time, renewed and reconnected.

A ``Link`` is one backend stream with its own sans-IO session, a writer task (the only sender, so
batches are never interleaved) and a reader task that is never cancelled. The ``SessionRunner``
feeds user intents to the current link, turns service events into host events, renews the stream
before the connection limit at a turn boundary, and reconnects with backoff on recoverable errors,
replaying the conversation history each time. Reconnects are counted until a turn is answered (a
service that accepts every stream and then fails it is given up on, not retried forever).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import json
import logging
import random
import time

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge.engines.failures import BackendError
from sonic_bridge.engines.sonic.backends.base import Backend, Stream
from sonic_bridge.engines.sonic.history import Message, tool_call_line, tool_result_line
from sonic_bridge.engines.sonic.protocol import JsonEvent, ProtocolError, SonicSession, dumps
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.ipc import messages as msg
from sonic_bridge.settings import SessionSettings
from sonic_bridge.vision.look import LookTool, session_with_look
from sonic_bridge.worker.activity import Activity
from sonic_bridge.worker.audio import Converter
from sonic_bridge.worker.outbox import Outbox

log = logging.getLogger("sonic_bridge.runner")

REPLAY_SECONDS = 3.0  # user audio replayed into a renewed stream
PENDING_AUDIO_SECONDS = 60.0  # user audio kept while no stream is ready
CLOSE_DRAIN_SECONDS = 2.0
CREDENTIAL_MARGIN = 180.0     # recycle this long before temporary credentials expire
RECONNECT_WINDOW = 120.0  # failures further apart than this are unrelated (a long silent session)
TOO_LARGE_RESULT = {"error": "the tool call was too large for the application's bridge; it was not run"}
HOLD_MARGIN = 0.06  # a reply chunk is held for its caption only while the host has more than this queued
MAX_HOLD = 0.3  # and never longer than this
# A host intent kept while no stream is ready: user audio, typed text, or a tool result (id, content).
Pending = bytes | str | tuple[str, str]


class FailureBudget:
    """Stream failures since the session last worked (a turn answered, a renewal), within a window."""

    def __init__(self, window: float = RECONNECT_WINDOW) -> None:
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def fail(self, now: float) -> int:
        """Record a failure; the number of recent failures, this one included."""
        self._times.append(now)
        while now - self._times[0] > self.window:
            self._times.popleft()
        return len(self._times)

    def succeeded(self) -> None:
        self._times.clear()


class Link:
    def __init__(self, number: int, stream: Stream, session: SonicSession) -> None:
        self.number = number
        self.stream = stream
        self.session = session
        self.opened_at = time.monotonic()
        # (events, the user audio they carry or None); None alone stops the writer
        self.queue: asyncio.Queue[tuple[list[JsonEvent], list[bytes] | None] | None] = asyncio.Queue()
        self.failure: asyncio.Future[BackendError | None] = asyncio.get_running_loop().create_future()
        self.retired = False
        self.tasks: list[asyncio.Task[None]] = []
        self.settings_version = 0  # which update_session's settings it was opened with (0: the start's)
        self.flush_timer: asyncio.TimerHandle | None = None  # hands out a held reply chunk (captions)

    def fail(self, error: BackendError | None) -> None:
        if not self.failure.done():
            self.failure.set_result(error)

    def send(self, batch: list[JsonEvent], audio: list[bytes] | None = None) -> None:
        """Queue events for the writer; ``audio``: the host frames they carry, counted once the stream took them."""
        if batch:
            self.queue.put_nowait((batch, audio))


class SessionRunner:
    def __init__(
        self, config: BridgeConfig, backend: Backend, outbox: Outbox, rng: random.Random | None = None,
        look: LookTool | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.outbox = outbox
        # The look tool (vision): registered with every stream, answered here, never sent to the host.
        self.look = look
        self._session = session_with_look(config.session, look.settings) if look is not None else config.session
        self._looks: set[asyncio.Task[None]] = set()
        self.rng = rng or random.Random()
        self.link: Link | None = None
        self.history: list[Message] = list(config.session.history)
        # LQ on the way in: soxr's HQ releases output in bursts (up to one frame of extra delay), and
        # the recogniser gains nothing from it. HQ on the way out, where listeners hear it.
        self._to_service = Converter(config.session.input_rate, ev.SampleFormat.INT16, quality="LQ")
        self._to_host = Converter(config.output_sample_rate, config.output_format)
        rate = config.session.input_rate
        self._replay: collections.deque[bytes] = collections.deque()
        self._replay_bytes = 0
        self._replay_limit = int(REPLAY_SECONDS * rate * 2)
        # Intents that arrived while no stream was ready, in order.
        self._pending: collections.deque[Pending] = collections.deque()
        self._batch: list[bytes] = []  # this tick's user audio, for the current link (end_of_batch)
        self._pending_bytes = 0
        self._pending_limit = int(PENDING_AUDIO_SECONDS * rate * 2)
        self.sent_frames = 0
        self.dropped_frames = 0
        self.drop_reason = ""
        self._closing = asyncio.Event()
        self._link_count = 0
        self._turn = 0
        self.renewals = 0
        self.reconnects = 0
        self.failures = FailureBudget()
        self._unanswered: str | None = None  # the user's last words, until the model answers them
        # Tool calls the host has not answered yet (cleared when a turn ends). While there are any, a new stream
        # does not ask the turn again: the host's late result goes to it as text and the model answers
        # from that (asking again as well made the model call the tool twice, and one call was refused).
        self._awaiting_host: set[str] = set()
        self.activity = Activity()
        session = config.session
        self._greeting = session.greeting if session.greeting and session.model.supports_text_input else None
        self._greeted = False  # the model finished a reply to the greeting
        self._user_spoke = False  # a USER transcript or typed text: no greeting any more
        self._fillers: dict[str, asyncio.Task[None]] = {}  # host tool calls waiting, each with its filler timer
        self._caption_carry: tuple[str, str, int] | None = None  # (response id, text, offset) of a chunk held back
        # update_session: each update gets a version; a stream opened with an older one is renewed.
        self._settings_version = 0
        self._applied_version = 0  # the version of the stream the host was last told about
        self._settings_wake = asyncio.Event()
        self._settings_retry_at = 0.0  # after a failed renewal, the next attempt waits until then

    # ------------------------------------------------------------------ commands from the host
    def handle(self, command: msg.Command) -> None:
        if isinstance(command, msg.AudioIn):
            self._audio(command)
            return
        self.end_of_batch()  # audio that came before a command goes to the stream before it
        if isinstance(command, msg.TextIn):
            self._text(command.text)
        elif isinstance(command, msg.ToolResultIn):
            self._tool_result(command.tool_use_id, command.content)
        elif isinstance(command, msg.SettingsIn):
            self._update_settings(command.session_json)
        elif isinstance(command, msg.CloseIn):
            self._closing.set()

    def _update_settings(self, session_json: str) -> None:
        """update_session: the next stream starts with these settings, and a renewal at the next turn boundary
        brings it (history kept, user audio replayed); its READY says SETTINGS_UPDATED."""
        try:
            new = SessionSettings.from_json(json.loads(session_json))
            session = dataclasses.replace(new, history=self.config.session.history)
            self.config = dataclasses.replace(self.config, session=session)
        except (TypeError, ValueError) as exc:  # the host checked them already: only a version skew gets here
            self.outbox.send(ev.Error(errors.BAD_CONFIGURATION, f"update_session refused: {exc}", recoverable=True))
            return
        self._session = session_with_look(session, self.look.settings) if self.look is not None else session
        self._settings_version += 1
        self._settings_retry_at = 0.0
        self._settings_wake.set()

    def _audio(self, frame: msg.AudioIn) -> None:
        pcm = self._to_service.convert(frame.pcm, frame.sample_rate, frame.sample_format)
        if not pcm:
            self.sent_frames += 1  # the resampler holds it back; it goes out with the next frame
            return
        self.activity.user_audio(pcm, time.monotonic())
        self._replay.append(pcm)
        self._replay_bytes += len(pcm)
        while self._replay_bytes > self._replay_limit:
            self._replay_bytes -= len(self._replay.popleft())
        link = self.link
        if link is None or self._closing.is_set():
            self._pending.append(pcm)
            self._pending_bytes += len(pcm)
            while self._pending_bytes > self._pending_limit:
                self._drop_oldest_pending_audio()
            return
        self._batch.append(pcm)

    def end_of_batch(self) -> None:
        """The audio of one worker tick (two host frames at 20 ms) as one audioInput event: half the events,
        encodings and writes per second of audio; the tick bounds the added delay (worker.main)."""
        if not self._batch:
            return
        frames, self._batch = self._batch, []
        link = self.link
        if link is None or self._closing.is_set():  # (cannot happen between a tick's reads; kept safe)
            for pcm in frames:
                self._pending.append(pcm)
                self._pending_bytes += len(pcm)
            return
        link.send(link.session.audio(b"".join(frames)), audio=frames)

    def _drop_oldest_pending_audio(self) -> None:
        for i, payload in enumerate(self._pending):
            if isinstance(payload, bytes):
                del self._pending[i]
                self._pending_bytes -= len(payload)
                self._drop("no stream for more than 60 s")
                return

    def _drop(self, reason: str) -> None:
        self.dropped_frames += 1
        self.drop_reason = reason

    def _text(self, text: str) -> None:
        link = self.link
        if link is None or self._closing.is_set():
            self._pending.append(text)
            return
        try:
            link.send(link.session.text(text))
        except ProtocolError as exc:
            self.outbox.send(ev.Error(errors.PROTOCOL, str(exc), recoverable=True))
            return
        self.history.append(Message(ev.Role.USER, text))
        self._unanswered = text  # the service does not echo typed text as a transcript
        self._user_spoke = True

    def _tool_result(self, tool_use_id: str, content: str) -> None:
        filler = self._fillers.pop(tool_use_id, None)
        if filler is not None:
            filler.cancel()  # the result is here: no "still working" any more
        link = self.link
        if link is None or self._closing.is_set():
            self._pending.append((tool_use_id, content))  # for the next stream, in order with the rest
            return
        self._awaiting_host.discard(tool_use_id)
        line = tool_result_line(tool_use_id, content)
        try:
            if tool_use_id in link.session.pending_tool_uses:
                link.send(link.session.tool_result(tool_use_id, content))
            elif link.session.model.supports_text_input:
                # The stream that asked is gone (renewal or reconnect): tell the new one as text instead.
                link.send(link.session.text(f"(The result of your earlier tool call arrived) {line}"))
        except ProtocolError as exc:
            self.outbox.send(ev.Error(errors.PROTOCOL, str(exc), recoverable=True))
            return
        self.history.append(Message(ev.Role.ASSISTANT, line))  # without text input, the next replay tells it

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        self._state(ev.BridgeState.CONNECTING)
        while not self._closing.is_set():
            try:
                link = await self._open_link()
            except BackendError as exc:
                if not await self._after_failure(exc, self.failures.fail(time.monotonic())):
                    return
                continue
            # An accepted stream is no success yet: only an answered turn (or a renewal) resets the count.
            self._switch_to(link, renewing=False)
            outcome = await self._serve(link)
            if outcome == "closed":
                break
            if isinstance(outcome, BackendError) or outcome is None:
                err = outcome or BackendError(
                    errors.SERVICE_ERROR, "the service ended the stream", recoverable=True, kind="EndOfStream"
                )
                self._retire(link, graceful=False)
                if not await self._after_failure(err, self.failures.fail(time.monotonic())):
                    return
        await self._close_current()

    async def _after_failure(self, exc: BackendError, attempt: int) -> bool:
        """Report; True to reconnect after a backoff, False when the bridge must stop."""
        self.link = None
        if not exc.recoverable:
            self.outbox.send(ev.Error(exc.code, exc.message, recoverable=False))
            return False
        if attempt > self.config.max_reconnects:
            self.outbox.send(
                ev.Error(
                    errors.RECONNECT_LIMIT,
                    f"gave up after {attempt - 1} reconnects without an answered turn (max_reconnects="
                    f"{self.config.max_reconnects}): {exc.message}",
                    recoverable=False,
                )
            )
            return False
        self.outbox.send(ev.Error(exc.code, exc.message, recoverable=True))
        self._state(ev.BridgeState.RECONNECTING, exc.kind or exc.code)
        delay = min(10.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + self.rng.random() / 2)
        self.reconnects += 1
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)
        return not self._closing.is_set()

    async def _open_link(self) -> Link:
        self._link_count += 1
        history = list(self.history)
        # A turn the old stream never answered (a fault, or a forced renewal) is asked again, unless it
        # waits for a tool result: that result, sent as text when the host has it, makes the model answer.
        reask = self._unanswered if self._link_count > 1 and not self._awaiting_host else None
        if reask and history and history[-1] == Message(ev.Role.USER, reask):
            history.pop()  # it is asked again below instead
        version = self._settings_version
        settings = dataclasses.replace(self._session, history=tuple(history))
        session = SonicSession(settings, response_prefix=f"{self._link_count}.", first_turn=self._turn,
                               captions=True)
        try:
            stream = await asyncio.wait_for(self.backend.open(settings), self.config.connect_timeout)
        except TimeoutError:
            raise BackendError(
                errors.ENDPOINT_UNREACHABLE,
                f"opening the stream took more than {self.config.connect_timeout} s",
                recoverable=True,
                kind="ConnectTimeout",
            ) from None
        link = Link(self._link_count, stream, session)
        link.settings_version = version
        link.tasks = [asyncio.create_task(self._writer(link)), asyncio.create_task(self._reader(link))]
        link.send(session.start())
        if reask and session.model.supports_text_input:
            # The stream died before the model answered: ask again, as the user would.
            link.send(session.text(reask))
        wait_ready = getattr(stream, "wait_ready", None)
        if wait_ready is not None:  # the SDK: the response headers prove the stream is accepted
            try:
                await asyncio.wait_for(wait_ready(), self.config.connect_timeout)
            except (TimeoutError, BackendError) as exc:
                self._retire(link, graceful=False)
                if isinstance(exc, BackendError):
                    raise
                raise BackendError(
                    errors.ENDPOINT_UNREACHABLE, f"no answer from the service within {self.config.connect_timeout} s",
                    recoverable=True, kind="ConnectTimeout",
                ) from None
        return link

    def _switch_to(self, link: Link, *, renewing: bool) -> None:
        if renewing:
            for chunk in self._replay:  # the old stream may have missed the end of the user's words
                link.send(link.session.audio(chunk))
        self.link = link
        while self._pending:
            payload = self._pending.popleft()
            if isinstance(payload, bytes):
                link.send(link.session.audio(payload), audio=[payload])
            elif isinstance(payload, str):
                self._text(payload)
            else:
                self._tool_result(*payload)
        self._pending_bytes = 0
        if not renewing and self._greeting is not None and not self._user_spoke and not self._greeted:
            # The avatar speaks first; after a reconnect again only if the greeting was never answered.
            link.send(link.session.text(self._greeting))
        updated = link.settings_version != self._applied_version
        self._applied_version = link.settings_version
        self._state(ev.BridgeState.READY, ev.SETTINGS_UPDATED if updated else "")

    async def _serve(self, link: Link) -> BackendError | str | None:
        """Run a link until it fails, the host closes, or it is renewed (then serve the new one)."""
        while True:
            renew_at = link.opened_at + self.config.renew_after
            expires = getattr(self.backend, "credentials_expire_at", lambda: None)()
            if expires is not None:  # a rotated key under an open signature chain breaks the stream
                left = (expires - datetime.datetime.now(datetime.UTC)).total_seconds() - CREDENTIAL_MARGIN
                renew_at = min(renew_at, time.monotonic() + max(left, 0.0))
            settings_due = link.settings_version != self._settings_version
            if settings_due:  # update_session: renew now (or, after a failed attempt, a little later)
                renew_at = min(renew_at, self._settings_retry_at)
            self._settings_wake.clear()
            closing: asyncio.Future[object] = asyncio.ensure_future(self._closing.wait())
            updated: asyncio.Future[object] = asyncio.ensure_future(self._settings_wake.wait())
            waiters: set[asyncio.Future[object]] = {closing, updated, link.failure}  # type: ignore[arg-type]
            try:
                await asyncio.wait(
                    waiters, timeout=max(0.0, renew_at - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                closing.cancel()
                updated.cancel()
            if self._closing.is_set():
                return "closed"
            if link.failure.done():
                return link.failure.result()
            if time.monotonic() < renew_at:
                continue  # woken by update_session: when to renew is worked out again
            new = await self._renew(link, settings=settings_due)
            if new is None:
                continue
            link = new

    async def _renew(self, old: Link, *, settings: bool = False) -> Link | None:
        """Proactive renewal (or update_session's): wait for a turn boundary and a pause of the user (bounded),
        prime a new stream, switch."""
        self._state(ev.BridgeState.RENEWING, "settings" if settings else "")
        deadline = time.monotonic() + self.config.renew_force_after
        while (old.session.assistant_speaking or old.session.pending_tool_uses or self._unanswered
               or self.activity.user_speaking(time.monotonic())) and time.monotonic() < deadline:
            if old.failure.done() or self._closing.is_set():
                return None
            await asyncio.sleep(0.05)
        self._turn = max(self._turn, old.session.turn_id)  # turn ids go on where the old stream left them
        try:
            new = await self._open_link()
        except BackendError as exc:
            log.warning("renewal failed, keeping the current stream: %s", exc.message)
            old.opened_at = time.monotonic() - self.config.renew_after + 5.0
            self._settings_retry_at = time.monotonic() + 5.0
            return None
        self.renewals += 1
        self.failures.succeeded()  # the old stream served its full term
        self._switch_to(new, renewing=True)
        self._retire(old, graceful=True)
        return new

    def _retire(self, link: Link, *, graceful: bool) -> None:
        """Close an old stream in the background, in the documented order, never cancelling its reader."""
        if link.retired:
            return
        link.retired = True
        self._turn = max(self._turn, link.session.turn_id)
        if graceful and not link.session.is_closed:
            link.send(link.session.close())
        link.queue.put_nowait(None)
        asyncio.get_running_loop().create_task(self._finish(link, graceful))

    async def _finish(self, link: Link, graceful: bool) -> None:
        with contextlib.suppress(asyncio.TimeoutError, BackendError, OSError):
            await asyncio.wait_for(asyncio.shield(link.tasks[0]), CLOSE_DRAIN_SECONDS)
            if graceful:
                await asyncio.wait_for(link.stream.end_input(), CLOSE_DRAIN_SECONDS)
            # Let the reader drain to the end of the stream; abandon it (not cancel) if it never ends.
            await asyncio.wait_for(asyncio.shield(link.tasks[1]), CLOSE_DRAIN_SECONDS)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(link.stream.aclose(), CLOSE_DRAIN_SECONDS)

    async def _close_current(self) -> None:
        self._state(ev.BridgeState.CLOSING)
        for filler in self._fillers.values():
            filler.cancel()
        self._fillers.clear()
        for payload in self._pending:
            if isinstance(payload, bytes):
                self._drop("the bridge closed before a stream could take it")
        self._pending.clear()
        link = self.link
        if link is not None:
            self.link = None
            self._retire(link, graceful=True)
            await self._finish(link, True)
        self.report_audio()

    # ------------------------------------------------------------------ per-link tasks
    async def _writer(self, link: Link) -> None:
        while True:
            item = await link.queue.get()
            if item is None:
                return
            batch, audio = item
            try:
                for event in batch:
                    await link.stream.send(dumps(event))
            except (BackendError, OSError) as exc:
                for _frame in audio or ():
                    self._drop("the stream failed while sending it")
                self._salvage(link)
                link.fail(_as_backend_error(exc, "send"))
                return
            if audio is not None:
                self.sent_frames += len(audio)

    def _salvage(self, link: Link) -> None:
        """User audio still queued for a failed stream goes to the next one, ahead of newer audio."""
        if link.retired:
            return
        left: list[bytes] = []
        while not link.queue.empty():
            item = link.queue.get_nowait()
            if item is not None and item[1] is not None:
                left.extend(item[1])
        for pcm in reversed(left):
            self._pending.appendleft(pcm)
            self._pending_bytes += len(pcm)

    async def _reader(self, link: Link) -> None:
        while True:
            try:
                raw = await link.stream.receive()
            except (BackendError, OSError) as exc:
                self._salvage(link)
                link.fail(_as_backend_error(exc, "receive"))
                return
            if raw is None:
                self._salvage(link)
                link.fail(None)
                return
            if link.retired:
                continue  # a retired stream's late output must not reach the host twice
            for event in link.session.receive(raw):
                self._deliver(link, event)
            self._pace_held(link)

    def _pace_held(self, link: Link) -> None:
        """A reply chunk held back for its caption (see SonicSession captions) waits for the next service event
        only while the host has audio queued to play meanwhile; a reply's first chunk never waits."""
        if link.session.held_audio is None:
            return
        spare = self.activity.playback_until - time.monotonic() - HOLD_MARGIN
        if link.flush_timer is not None:
            link.flush_timer.cancel()
            link.flush_timer = None
        if spare <= 0.0:
            self._flush_held(link)
        else:
            link.flush_timer = asyncio.get_running_loop().call_later(min(spare, MAX_HOLD), self._flush_held, link)

    def _flush_held(self, link: Link) -> None:
        link.flush_timer = None
        if not link.retired:
            for event in link.session.flush_audio():
                self._deliver(link, event)

    def _deliver(self, link: Link, event: ev.Event) -> None:
        if isinstance(event, ev.AudioOut):
            pcm = self._to_host.convert(event.pcm, event.sample_rate, event.sample_format)
            text, offset = self._caption_for(event.response_id, event.text, event.text_offset)
            if not pcm:  # the resampler holds it back: its caption goes with the next chunk
                self._caption_carry = (event.response_id, text, offset) if text else None
                return
            event = ev.AudioOut(pcm, self.config.output_sample_rate, self.config.output_format, event.response_id,
                                text, offset)
            self.activity.model_audio(event.duration, time.monotonic())
        elif isinstance(event, ev.Interrupted):
            self._to_host.reset()  # the rest of that response must not be heard
            self._caption_carry = None
            self.activity.model_stopped(time.monotonic())
        elif isinstance(event, ev.TurnEnded):
            tail = self._to_host.flush()
            text, offset = self._caption_for(event.response_id, "", 0)
            if tail and event.stop_reason != "INTERRUPTED":
                self.outbox.send(ev.AudioOut(tail, self.config.output_sample_rate, self.config.output_format,
                                             event.response_id, text, offset))
        if isinstance(event, ev.Transcript) and event.stage is ev.Stage.FINAL:
            said = Message(event.role, event.text)
            if not (event.role is ev.Role.USER and self.history and self.history[-1] == said):  # typed, echoed
                self.history.append(said)
            if event.role is ev.Role.USER:
                self._unanswered = event.text
                self._user_spoke = True
                self._replay.clear()  # the model heard this turn: a renewal must not replay it
                self._replay_bytes = 0
        elif isinstance(event, ev.TurnEnded) and event.stop_reason == "END_TURN":
            self._greeted = self._greeted or self._greeting is not None
            self._unanswered = None
            self._awaiting_host.clear()
            self.failures.succeeded()
        elif isinstance(event, ev.ToolCall) and self.look is not None and event.name == self.look.name:
            self.history.append(Message(ev.Role.ASSISTANT, tool_call_line(event.name, event.arguments)))
            self._awaiting_host.add(event.tool_use_id)  # a new stream must not ask the turn again meanwhile
            task = asyncio.get_running_loop().create_task(self._look(event), name="look")
            self._looks.add(task)
            task.add_done_callback(self._looks.discard)
            return
        elif isinstance(event, ev.ToolCall):
            self.history.append(Message(ev.Role.ASSISTANT, tool_call_line(event.name, event.arguments)))
            if not self.outbox.fits(event):
                self._refuse_tool_call(link, event)
                return
            self._awaiting_host.add(event.tool_use_id)
            if self.config.tool_filler_after is not None and link.session.model.supports_text_input:
                self._fillers[event.tool_use_id] = asyncio.get_running_loop().create_task(
                    self._fill_while_waiting(event.tool_use_id, self.config.tool_filler_after), name="tool filler")
        self.outbox.send(event)

    async def _fill_while_waiting(self, tool_use_id: str, delay: float) -> None:
        """A slow host tool: once per call, as soon as neither the user nor the model speaks, the model is told
        (as typed text, an instruction) to say that it is still working. Cancelled when the result comes."""
        await asyncio.sleep(delay)
        while True:
            link = self.link
            if link is not None and tool_use_id not in link.session.pending_tool_uses:
                self._fillers.pop(tool_use_id, None)  # a new stream never heard of the call: it has nothing to say
                return
            if link is not None and not self._closing.is_set() and self.activity.quiet(time.monotonic()):
                with contextlib.suppress(ProtocolError):  # the stream is closing: the result will come anyway
                    link.send(link.session.text(self.config.tool_filler_text))
                    log.info("tool call %s has waited %.1f s for the host: filler sent", tool_use_id, delay)
                self._fillers.pop(tool_use_id, None)
                return
            await asyncio.sleep(0.1)

    async def _look(self, call: ev.ToolCall) -> None:
        """Answer the look tool while the conversation goes on (Nova 2 asynchronous tools); the result takes
        the path of a host's tool result, so it reaches a renewed or reconnected stream as well."""
        assert self.look is not None
        result = await self.look.answer(call.tool_use_id, call.arguments)
        self.outbox.send(result.event)
        if result.warning is not None:
            self.outbox.send(result.warning)
        self._tool_result(call.tool_use_id, result.content)

    def _caption_for(self, response_id: str, text: str, offset: int) -> tuple[str, int]:
        """A chunk's caption, after any caption whose own chunk the resampler kept back."""
        carry, self._caption_carry = self._caption_carry, None
        if carry is None or carry[0] != response_id:
            return text, offset
        return carry[1] + text, carry[2]

    def _refuse_tool_call(self, link: Link, call: ev.ToolCall) -> None:
        """A call too large for the ring: the model gets an error result at once instead of waiting forever."""
        self.outbox.send(ev.Warning(
            errors.WORKER_MESSAGE_TOO_LARGE,
            f"the tool call {call.name!r} ({call.tool_use_id}) is too large for the worker->host ring "
            f"(at most {self.outbox.max_message} bytes per message; raise outbound_capacity): the bridge "
            "answered the model with an error result instead"))
        content = json.dumps(TOO_LARGE_RESULT)
        try:
            link.send(link.session.tool_result(call.tool_use_id, content))
        except ProtocolError as exc:  # the stream is closing: the next one is told by the history
            log.warning("could not answer the refused tool call: %s", exc)
        self.history.append(Message(ev.Role.ASSISTANT, tool_result_line(call.tool_use_id, content)))

    # ------------------------------------------------------------------ reporting
    def _state(self, state: ev.BridgeState, detail: str = "") -> None:
        self.outbox.send(ev.StateChanged(state, detail))

    def report_audio(self) -> None:
        self.outbox.send(msg.AudioAccounted(self.sent_frames, self.dropped_frames, self.drop_reason))


def _as_backend_error(exc: BaseException, what: str) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    return BackendError(errors.SERVICE_ERROR, f"{what} failed: {exc}", recoverable=True, kind="ConnectionReset")
