"""An OpenAvatarChat handler that speaks with Amazon Nova Sonic through sonic-bridge.

Enable it in YAML with ``module: nova_sonic_s2s/handler_nova_sonic`` and this folder's parent on the
``handler_search_path``. OpenAvatarChat runs on Python 3.11; the Nova Sonic stream runs in a
sonic-bridge worker on Python >= 3.12: ``sonic-bridge worker-env`` makes one where the bridge finds it,
or set ``worker_python``.

Threads: ``handle`` (the engine's pump thread) pushes the user's audio; one output thread per session
polls the bridge, submits the avatar's audio and texts, and feeds silence while no speech arrives (after
the VAD's end-of-speech marker, or a gap far longer than any chunk period), so Nova Sonic hears the end
of each turn. Both push through one lock of this handler, so silence never lands inside speech (the
bridge's own calls are thread-safe too). Nothing here blocks the engine: create/start return at once,
handle never waits, destroy finishes within 2 s. When the session ends (closed, or failed for good) the
output thread reports why once and stops, and further input is dropped quietly.
Logging goes to loguru when it is installed (OpenAvatarChat's logger), levels kept.

AVATAR_TEXT carries the captions of the audio: each AVATAR_AUDIO chunk is preceded by the words it speaks
(``AudioOut.text``), so text and voice travel together and an interrupted reply's text ends where its
audio did. ``greeting`` makes the avatar speak first when a visitor's session is ready.

Camera (``enable_video_input: true``): CAMERA_VIDEO frames go to ``SonicBridge.push_video`` from ``handle``
(microseconds for the frames the bridge does not keep: one per ``video_frame_interval_ms``), and Nova Sonic
gets the built-in look tool, answered by a multimodal Nova (``vision_model_id``) from the latest frames.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
import uuid
from typing import Any, Literal

import numpy as np
from chat_engine.common.handler_base import HandlerBase, HandlerBaseInfo, HandlerDataInfo, HandlerDetail
from chat_engine.contexts.handler_context import HandlerContext
from chat_engine.data_models.chat_data import chat_data_model
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_engine_config_data import HandlerBaseConfigModel
from chat_engine.data_models.runtime_data.data_bundle import DataBundle, DataBundleDefinition, DataBundleEntry
from pydantic import BaseModel, Field

import sonic_bridge as sb
from sonic_bridge import CascadeSettings, VisionSettings, model_info, route_to_loguru

log = logging.getLogger("sonic_bridge.openavatarchat")
OUTPUT_RATE = 24000
CYCLE = 0.02
# No input for this long means the mic paused: fill with silence. Far above any engine chunk period
# (MIC_AUDIO arrives every 60 ms, VAD clips every 32 ms), so jitter never puts silence inside speech.
INPUT_GAP = 0.5
MAX_FILL_PER_CYCLE = 10  # catch up at most 200 ms of silence per cycle after a late wake-up
END_MARKER_SAMPLES = 240  # the engine rejects empty audio, so a stream ends with a short silence
MAX_PRESTARTED = 4  # default pool size at most: each idle worker holds ~80 MB


class NovaSonicConfig(HandlerBaseConfigModel, BaseModel):
    model_id: str = Field(default="amazon.nova-2-sonic-v1:0")
    region: str = Field(default="us-east-1")
    voice: str = Field(default="matthew")
    system_prompt: str = Field(default="You are a friendly avatar. Keep your answers short.")
    input_mode: Literal["MIC_AUDIO", "HUMAN_AUDIO"] = Field(default="MIC_AUDIO")
    backend: Literal["aws", "fake"] = Field(default="aws")
    worker_python: str | None = Field(default=None)
    endpoint: str | None = Field(default=None)
    ca_file: str | None = Field(default=None)
    profile: str | None = Field(default=None)
    turn_sensitivity: Literal["HIGH", "MEDIUM", "LOW"] = Field(default="MEDIUM")
    tools: list[dict[str, Any]] = Field(default_factory=list)
    reenable_vad_after_response: bool = Field(default=False)  # audio-only classic engine: no avatar does it
    renew_after_seconds: float = Field(default=360.0)
    fake_scenario: str | None = Field(default=None)  # backend "fake": a scenario file (tries it without AWS)
    greeting: str | None = Field(default=None)  # the avatar speaks first: an instruction, e.g. "Greet the visitor."
    # Pre-started workers, so a visitor's session is ready at once: None keeps as many as the engine's
    # concurrent_limit (at most MAX_PRESTARTED), 0 starts every session cold.
    prestart_workers: int | None = Field(default=None, ge=0, le=64)
    # Shared worker processes: 0 gives every session a worker process of its own; N > 0 runs up to N sessions
    # in each worker process (sonic_bridge.WorkerGroup: far less CPU and memory per session, a warm process
    # always ready; a worker's crash costs its N sessions, which restart with their history).
    sessions_per_worker: int = Field(default=0, ge=0, le=64)
    # "cascade": Transcribe -> Nova (ConverseStream) -> Polly instead of Nova Sonic (e.g. for Mandarin);
    # ``cascade`` holds its settings (sonic_bridge.CascadeSettings fields: language, voice, polly_engine ...).
    engine: Literal["sonic", "cascade"] = Field(default="sonic")
    cascade: dict[str, Any] = Field(default_factory=dict)
    # The camera: CAMERA_VIDEO in, the look tool for Nova Sonic (names as OpenAvatarChat's qwen_omni handler).
    enable_video_input: bool = Field(default=False)
    video_frame_interval_ms: int = Field(default=1000, ge=250, le=60000)
    vision_model_id: str = Field(default="us.amazon.nova-2-lite-v1:0")
    vision_max_side: int = Field(default=640, ge=64, le=8000)
    vision_window: int = Field(default=20, ge=1, le=200)

    def bridge_config(self) -> sb.BridgeConfig:
        session = sb.SessionSettings(
            model_id=self.model_id, voice=self.voice, system_prompt=self.system_prompt,
            tools=tuple(sb.Tool.from_json(t) for t in self.tools),
            turn_sensitivity=self.turn_sensitivity if model_info(self.model_id, warn=False).supports_turn_detection
            else None,  # Nova Sonic 1 has no turn-detection setting
            greeting=self.greeting)
        return sb.BridgeConfig(session=session, backend=self.backend, region=self.region, endpoint=self.endpoint,
                               ca_file=self.ca_file, profile=self.profile, worker_python=self.worker_python,
                               output_sample_rate=OUTPUT_RATE, output_format=sb.SampleFormat.FLOAT32,
                               renew_after=self.renew_after_seconds,
                               fake=sb.FakeOptions(scenario=self.fake_scenario),
                               engine=self.engine, cascade=CascadeSettings.from_json(self.cascade),
                               vision=VisionSettings(enabled=self.enable_video_input,
                                                     frame_interval_s=self.video_frame_interval_ms / 1000,
                                                     model_id=self.vision_model_id, max_side=self.vision_max_side,
                                                     window=self.vision_window))


class NovaSonicContext(HandlerContext):
    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.config: NovaSonicConfig | None = None
        self.session_context: Any = None
        self.bridge: sb.SonicBridge | None = None
        self.output_thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.speech_id: str | None = None      # the reply being spoken
        self.human_speech_id: str | None = None
        self.interrupted: set[str] = set()
        self.input_lock = threading.Lock()  # input state and every push of this session
        self.last_input = 0.0  # monotonic time the last input chunk arrived
        self.speech_ended = False  # the VAD said the utterance is over: silence may follow at once
        self.filled_until = 0.0  # monotonic time up to which silence was pushed
        self.dropped_closed = 0  # input chunks that arrived after the session ended
        self.input_rate = 16000
        self.bad_frames = 0  # CAMERA_VIDEO frames the bridge refused (logged once, then every 1000th)
        self.tool_handler: Any = None
        self.errors: list[sb.Error] = []
        self.looks: list[sb.Look] = []
        self.states: list[sb.BridgeState] = []


class HandlerNovaSonic(HandlerBase):
    def __init__(self) -> None:
        super().__init__()
        self.config = NovaSonicConfig()
        self._finish_param: bool | None = None
        self._pool: sb.WorkerPool | None = None
        self._group: sb.WorkerGroup | None = None

    # ----------------------------------------------------------------- registration
    def get_handler_info(self) -> HandlerBaseInfo:
        return HandlerBaseInfo(config_model=NovaSonicConfig)

    def load(self, engine_config: Any, handler_config: HandlerBaseConfigModel | None = None) -> None:
        route_to_loguru()  # OpenAvatarChat's log: the handler's and the library's lines go where its own go
        if isinstance(handler_config, NovaSonicConfig):
            self.config = handler_config
        template = self.config.bridge_config()  # every setting checked once, at start-up, with a clear error
        if self.config.sessions_per_worker > 0:
            if self._group is None:  # its first process starts now, in the background
                self._group = sb.WorkerGroup(template, sessions_per_worker=self.config.sessions_per_worker)
            return  # a group keeps a warm process itself: no pool
        size = self.config.prestart_workers
        if size is None:
            size = min(max(1, self.config.concurrent_limit), MAX_PRESTARTED)
        if size > 0 and self._pool is None:
            self._pool = sb.WorkerPool(template, size=size)  # starts in the background: load() does not wait

    def destroy(self) -> None:
        """Engine shutdown: the pre-started and the shared workers end by their pids."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._group is not None:
            self._group.close()
            self._group = None

    def get_handler_detail(self, session_context: Any, context: Any) -> HandlerDetail:
        audio = DataBundleDefinition()
        audio.add_entry(DataBundleEntry.create_audio_entry("avatar_audio", 1, OUTPUT_RATE))
        avatar_text = DataBundleDefinition()
        avatar_text.add_entry(DataBundleEntry.create_text_entry("avatar_text"))
        human_text = DataBundleDefinition()
        human_text.add_entry(DataBundleEntry.create_text_entry("human_text"))
        source = ChatDataType[self.config.input_mode]
        inputs = {source: HandlerDataInfo(type=source)}
        if self.config.enable_video_input:
            inputs[ChatDataType.CAMERA_VIDEO] = HandlerDataInfo(type=ChatDataType.CAMERA_VIDEO)
        return HandlerDetail(
            inputs=inputs,
            outputs={ChatDataType.AVATAR_AUDIO: HandlerDataInfo(type=ChatDataType.AVATAR_AUDIO, definition=audio),
                     ChatDataType.AVATAR_TEXT: HandlerDataInfo(type=ChatDataType.AVATAR_TEXT, definition=avatar_text),
                     ChatDataType.HUMAN_TEXT: HandlerDataInfo(type=ChatDataType.HUMAN_TEXT, definition=human_text)})

    # ----------------------------------------------------------------- session lifecycle
    def create_context(self, session_context: Any, handler_config: HandlerBaseConfigModel | None = None) -> Any:
        # Runs on the web server's event loop: only cheap work here.
        context = NovaSonicContext(session_context.session_info.session_id)
        context.config = handler_config if isinstance(handler_config, NovaSonicConfig) else self.config
        context.session_context = session_context
        config = context.config.bridge_config()
        group = self._group
        if group is not None:
            try:
                group.check(config)
            except ValueError as exc:  # this session's own settings cannot share: a worker of its own
                log.warning("Nova Sonic session %s: %s", context.session_id, exc)
                group = None
        context.bridge = sb.SonicBridge(config, pool=self._pool if group is None else None, group=group)
        return context

    def start_context(self, session_context: Any, handler_context: Any) -> None:
        context: NovaSonicContext = handler_context
        assert context.bridge is not None
        context.bridge.start()  # returns at once; the worker connects in the background
        context.last_input = time.monotonic()
        context.output_thread = threading.Thread(target=self._output_loop, args=(context,), daemon=True,
                                                 name=f"nova-sonic-out-{context.session_id}")
        context.output_thread.start()

    def destroy_context(self, context: Any) -> None:
        ctx: NovaSonicContext = context
        ctx.stop.set()
        if ctx.output_thread is not None:
            ctx.output_thread.join(timeout=0.5)
        if ctx.bridge is not None:
            ctx.bridge.close(timeout=1.0)  # then the worker is killed by pid: bounded either way

    # ----------------------------------------------------------------- input (engine's pump thread)
    def handle(self, context: Any, inputs: Any, output_definitions: dict[ChatDataType, HandlerDataInfo]) -> None:
        ctx: NovaSonicContext = context
        bridge = ctx.bridge
        if bridge is None or bridge.closed:  # the session ended (its reason was logged once): drop quietly
            ctx.dropped_closed += 1
            return
        if inputs.type == ChatDataType.CAMERA_VIDEO:
            self._camera(ctx, bridge, inputs)
            return
        try:
            if inputs.type not in (ChatDataType.MIC_AUDIO, ChatDataType.HUMAN_AUDIO) or inputs.data is None:
                return
            audio = inputs.data.get_main_data()
            if audio is None or np.size(audio) == 0:
                return
            rate = inputs.data.get_main_definition_entry().sample_rate or 16000
            ctx.input_rate = rate
            with ctx.input_lock:
                bridge.push_audio(np.asarray(audio).reshape(-1), rate)
                ctx.last_input = time.monotonic()
                # SileroVad's end of an utterance (classic meta, or the stream engine's last chunk): from now on
                # the output thread feeds silence, which is what Nova Sonic's end-of-turn detection listens for.
                ctx.speech_ended = bool(inputs.data.get_meta("human_speech_end", False)
                                        or getattr(inputs, "is_last_data", False))
        except Exception:  # the classic engine would silently lose its pump thread
            log.exception("Nova Sonic handler: could not take an input chunk (session %s)", ctx.session_id)

    def _camera(self, ctx: NovaSonicContext, bridge: sb.SonicBridge, inputs: Any) -> None:
        """One CAMERA_VIDEO frame ([1, H, W, 3] uint8 BGR at up to 30 fps): the bridge keeps one per interval.
        Not under the input lock: a frame never delays the audio."""
        if not (ctx.config and ctx.config.enable_video_input) or inputs.data is None:
            return
        try:
            frame = inputs.data.get_main_data()
            if frame is not None:
                bridge.push_video(frame, pixel_format="bgr24")
        except Exception:
            ctx.bad_frames += 1
            if ctx.bad_frames == 1 or ctx.bad_frames % 1000 == 0:  # 30 frames a second must not flood the log
                log.exception("Nova Sonic handler: could not take camera frame %d (session %s)", ctx.bad_frames,
                              ctx.session_id)

    # ----------------------------------------------------------------- output thread
    def _output_loop(self, ctx: NovaSonicContext) -> None:
        bridge = ctx.bridge
        assert bridge is not None
        failures = 0
        while not ctx.stop.is_set():
            try:
                self._fill_silence(ctx, bridge)
                for event in bridge.poll():
                    self._emit(ctx, event)
            except Exception:
                failures += 1
                if failures == 1 or failures % 1000 == 0:  # a bug must not flood the log
                    log.exception("Nova Sonic handler: output loop error %d (session %s)", failures, ctx.session_id)
            try:
                bridge.wait(CYCLE)
            except sb.BridgeClosed:
                break  # every event was delivered; nothing more will come
        if bridge.closed and not ctx.stop.is_set():
            reason = bridge.close_reason
            log.warning("Nova Sonic session %s ended%s; its output stopped", ctx.session_id,
                        f" ({reason.code})" if reason else "")
            self._end_reply(ctx)

    def _fill_silence(self, ctx: NovaSonicContext, bridge: sb.SonicBridge) -> None:
        """Between VAD segments (HUMAN_AUDIO) or while the mic is paused, keep the stream fed with silence
        in real time: Nova Sonic ends a turn on silence and drops streams that go quiet."""
        with ctx.input_lock:
            now = time.monotonic()
            if not ctx.speech_ended and now - ctx.last_input < INPUT_GAP:
                return
            start = max(ctx.filled_until, ctx.last_input)
            frames = min(MAX_FILL_PER_CYCLE, int((now - start) / CYCLE))
            if frames <= 0:
                return
            silence = np.zeros(int(16000 * CYCLE) * frames, np.float32)
            bridge.push_audio(silence, 16000)
            ctx.filled_until = start + frames * CYCLE

    def _emit(self, ctx: NovaSonicContext, event: sb.Event) -> None:
        if isinstance(event, sb.AudioOut):
            if event.response_id in ctx.interrupted:
                return
            if ctx.speech_id is None:
                ctx.speech_id = f"speech-{ctx.session_id}-{uuid.uuid4().hex[:8]}"
            if event.text:  # the words this chunk speaks, just ahead of it: text and voice stay in step
                self._text(ctx, ChatDataType.AVATAR_TEXT, event.text, "avatar_text_end", ctx.speech_id, end=False)
            self._audio(ctx, event.samples().reshape(1, -1), end=False)
        elif isinstance(event, sb.Transcript):
            # The user's words once they are final; partial transcripts (the cascade's Transcribe) are revisions
            # of an utterance still being spoken, not pieces to append.
            if event.role is sb.Role.USER and event.stage is sb.Stage.FINAL:
                ctx.human_speech_id = f"human-{ctx.session_id}-{event.turn_id}-{uuid.uuid4().hex[:6]}"
                self._text(ctx, ChatDataType.HUMAN_TEXT, event.text, "human_text_end", ctx.human_speech_id, end=False)
                self._text(ctx, ChatDataType.HUMAN_TEXT, "", "human_text_end", ctx.human_speech_id, end=True)
        elif isinstance(event, sb.Interrupted):
            ctx.interrupted.add(event.response_id)
            self._end_reply(ctx)
            self._signal_interrupt(ctx)
        elif isinstance(event, sb.TurnEnded):
            self._end_reply(ctx)
        elif isinstance(event, sb.ToolCall):
            result = {"error": f"no tool handler for {event.name}"}
            if ctx.tool_handler is not None:
                try:
                    result = ctx.tool_handler(event.name, event.arguments)
                except Exception as exc:  # the model waits for an answer: always give one
                    result = {"error": str(exc)}
            ctx.bridge.send_tool_result(event.tool_use_id, result)  # type: ignore[union-attr]
        elif isinstance(event, sb.StateChanged):
            ctx.states.append(event.state)
            log.info("Nova Sonic session %s: %s", ctx.session_id, event.state.value)
        elif isinstance(event, sb.Look):
            ctx.looks.append(event)
            log.info("Nova Sonic session %s looked (%d frames, %.2f s): %s", ctx.session_id, len(event.frame_ages),
                     event.latency, event.answer or event.error)
        elif isinstance(event, sb.Warning):
            log.warning("Nova Sonic %s: %s", event.code, event.message)
        elif isinstance(event, sb.Error):
            ctx.errors.append(event)
            (log.warning if event.recoverable else log.error)("Nova Sonic %s: %s", event.code, event.message)

    def _end_reply(self, ctx: NovaSonicContext) -> None:
        if ctx.speech_id is None:
            return
        self._text(ctx, ChatDataType.AVATAR_TEXT, "", "avatar_text_end", ctx.speech_id, end=True)
        self._audio(ctx, np.zeros((1, END_MARKER_SAMPLES), np.float32), end=True)
        ctx.speech_id = None
        if ctx.config is not None and ctx.config.reenable_vad_after_response:
            states = getattr(ctx.session_context, "shared_states", None)
            if states is not None and hasattr(states, "enable_vad"):
                states.enable_vad = True

    # ----------------------------------------------------------------- engine plumbing
    def _audio(self, ctx: NovaSonicContext, samples: np.ndarray, *, end: bool) -> None:
        definition = DataBundleDefinition()
        definition.add_entry(DataBundleEntry.create_audio_entry("avatar_audio", 1, OUTPUT_RATE))
        bundle = DataBundle(definition)
        bundle.set_main_data(samples.astype(np.float32, copy=False))
        bundle.add_meta("speech_id", ctx.speech_id)
        bundle.add_meta("avatar_speech_end", end)
        self._submit(ctx, ChatDataType.AVATAR_AUDIO, bundle, end)

    def _text(self, ctx: NovaSonicContext, kind: ChatDataType, text: str, end_key: str, speech_id: str | None,
              *, end: bool) -> None:
        definition = DataBundleDefinition()
        definition.add_entry(DataBundleEntry.create_text_entry(kind.value[0]))
        bundle = DataBundle(definition)
        bundle.set_main_data(text)
        bundle.add_meta("speech_id", speech_id)
        bundle.add_meta(end_key, end)
        self._submit(ctx, kind, bundle, end)

    def _submit(self, ctx: NovaSonicContext, kind: ChatDataType, bundle: DataBundle, end: bool) -> None:
        data = chat_data_model.ChatData(type=kind, data=bundle)  # keywords: field order differs by engine
        if self._finish_param is None:
            with contextlib.suppress(TypeError, ValueError):
                self._finish_param = "finish_stream" in inspect.signature(ctx.submit_data).parameters
        if self._finish_param:
            ctx.submit_data(data, finish_stream=end)
        else:
            ctx.submit_data(data)

    def _signal_interrupt(self, ctx: NovaSonicContext) -> None:
        emit = getattr(ctx, "emit_signal", None)
        if emit is None:
            return  # the classic engine has no interruption: the end markers above close the reply
        try:
            from chat_engine.data_models.chat_signal import ChatSignal
            from chat_engine.data_models.chat_signal_type import ChatSignalSourceType, ChatSignalType
        except ImportError:
            return
        emit(ChatSignal(type=ChatSignalType.INTERRUPT, source_type=ChatSignalSourceType.HANDLER,
                        source_name=ctx.owner))
