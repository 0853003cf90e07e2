"""The OpenAvatarChat handler against a stand-in of the engine (tests/oac_standin), on the fake Sonic."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sonic_bridge.cli.demo import synth_utterance

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("pydantic")


LOADED: list[Any] = []  # handlers a test loaded: the engine's shutdown (destroy) ends their pre-started workers


@pytest.fixture(autouse=True)
def engine_shutdown() -> Any:
    import logging

    target = logging.getLogger("sonic_bridge")  # load() routes it into loguru: give it back to other tests
    saved = (list(target.handlers), target.propagate, target.level)
    yield
    while LOADED:
        LOADED.pop().destroy()
    target.handlers[:], target.propagate = saved[0], saved[1]
    target.setLevel(saved[2])


@pytest.fixture
def oac(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "oac_standin"))
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "openavatarchat_handler"))
    for name in [m for m in sys.modules if m.startswith(("chat_engine", "nova_sonic_s2s"))]:
        monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module("nova_sonic_s2s.handler_nova_sonic")  # as the engine imports it
    return module


@pytest.fixture
def handler_log() -> Any:
    """What reaches OpenAvatarChat's log: the handler routes sonic_bridge logging into loguru."""
    loguru = pytest.importorskip("loguru")
    lines: list[str] = []
    sink = loguru.logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{level} {message}\n{exception}")
    yield lines
    loguru.logger.remove(sink)


def concrete_handlers(module: Any) -> list[type]:
    from chat_engine.common.handler_base import HandlerBase

    return [obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, HandlerBase) and not inspect.isabstract(obj)]


@pytest.mark.skipif(not os.environ.get("SONIC_BRIDGE_EXPECT_INSTALLED"), reason="only in the installed layout")
def test_the_library_comes_from_the_installed_wheel() -> None:
    import sonic_bridge

    assert "site-packages" in sonic_bridge.__file__ and sys.version_info[:2] == (3, 11)


def test_the_module_holds_exactly_one_concrete_handler(oac: Any) -> None:
    (handler,) = concrete_handlers(oac)
    assert handler.__name__ == "HandlerNovaSonic"
    info = handler().get_handler_info()
    from chat_engine.data_models.chat_engine_config_data import HandlerBaseConfigModel
    assert issubclass(info.config_model, HandlerBaseConfigModel)
    config = info.config_model.model_validate({"module": "nova_sonic_s2s/handler_nova_sonic", "unknown": 1,
                                               "backend": "fake", "voice": "tiffany"})
    assert config.voice == "tiffany"
    with pytest.raises(ValueError, match="'zed' is not available"):
        handler().load(None, info.config_model.model_validate({"voice": "zed"}))


class Engine:
    """What OpenAvatarChat does with a handler, for either engine generation."""

    def __init__(self, module: Any, raw_config: dict[str, Any], generation: str, monkeypatch: pytest.MonkeyPatch):
        from chat_engine.contexts.session_context import SessionContext, SessionInfoData
        from chat_engine.data_models.chat_data import chat_data_model
        from chat_engine.data_models.chat_engine_config_data import ChatEngineConfigModel

        if generation == "stream":
            monkeypatch.setattr(chat_data_model, "ChatData", chat_data_model.StreamChatData)
        (cls,) = concrete_handlers(module)
        self.handler = cls()
        self.config = self.handler.get_handler_info().config_model.model_validate(raw_config)
        self.handler.load(ChatEngineConfigModel(), self.config)
        LOADED.append(self.handler)
        self.session = SessionContext(SessionInfoData("s1"))
        self.session.shared_states.enable_vad = False
        self.submitted: list[tuple[Any, bool | None, float]] = []
        self.signals: list[Any] = []
        t0 = time.perf_counter()
        self.context = self.handler.create_context(self.session, self.config)
        self.create_ms = (time.perf_counter() - t0) * 1000
        self.detail = self.handler.get_handler_detail(self.session, self.context)
        self.context.owner = "NovaSonic"
        if generation == "stream":
            self.context.submit_data = lambda data, finish_stream=None: self.submitted.append(
                (data, finish_stream, time.monotonic()))
            self.context.emit_signal = self.signals.append
        else:
            self.context.data_submitter = lambda data, _: self.submitted.append((data, None, time.monotonic()))
        t0 = time.perf_counter()
        self.handler.start_context(self.session, self.context)
        self.start_ms = (time.perf_counter() - t0) * 1000
        self.worst_handle_ms = 0.0

    def mic(self, samples: np.ndarray) -> None:
        """Real-time MIC_AUDIO: int16 [1, 960] every 60 ms, as fastrtc delivers it."""
        from chat_engine.data_models.chat_data.chat_data_model import ChatData
        from chat_engine.data_models.chat_data_type import ChatDataType
        from chat_engine.data_models.runtime_data.data_bundle import DataBundle, DataBundleDefinition, DataBundleEntry

        definition = DataBundleDefinition()
        definition.add_entry(DataBundleEntry.create_audio_entry("mic_audio", 1, 16000))
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        start = time.monotonic()
        for n, i in enumerate(range(0, len(pcm) - 959, 960)):
            bundle = DataBundle(definition)
            bundle.set_main_data(pcm[i : i + 960].reshape(1, -1))
            t0 = time.perf_counter()
            self.handler.handle(self.context, ChatData(type=ChatDataType.MIC_AUDIO, data=bundle), self.detail.outputs)
            self.worst_handle_ms = max(self.worst_handle_ms, (time.perf_counter() - t0) * 1000)
            time.sleep(max(0.0, start + (n + 1) * 0.06 - time.monotonic()))

    def of(self, kind: str) -> list[tuple[Any, bool | None]]:
        return [(d, f) for d, f, _ in self.submitted if d.type.name == kind]


@pytest.mark.parametrize("generation", ["classic", "stream"])
def test_a_full_session_audio_texts_markers_barge_in_and_renewal(
    oac: Any, generation: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 3, "speed": 1.0, "thinking_ms": [300, 300]}))  # real-time replies
    engine = Engine(oac, {"backend": "fake", "turn_sensitivity": "HIGH", "renew_after_seconds": 6.0,
                          "fake_scenario": str(scenario), "reenable_vad_after_response": True},
                    generation, monkeypatch)
    silence = np.zeros(16000, np.float32)
    try:
        engine.mic(np.concatenate([synth_utterance(1.0, 16000, seed=1), silence[:8000], silence, silence,
                                   silence[:8000]]))                                       # turn 1, answered
        engine.mic(np.concatenate([synth_utterance(2.0, 16000, seed=2), silence, silence[:11000]]))  # turn 2...
        engine.mic(np.concatenate([synth_utterance(0.8, 16000, seed=3), silence, silence, silence]))  # ...cut in
        engine.mic(np.concatenate([synth_utterance(0.6, 16000, seed=4), silence, silence, silence]))  # after renewal
        t0 = time.perf_counter()
    finally:
        engine.handler.destroy_context(engine.context)
    destroy_s = time.perf_counter() - t0
    ctx = engine.context

    assert engine.create_ms < 50 and engine.start_ms < 50, (engine.create_ms, engine.start_ms)
    # handle() never waits on the network or the worker; the bound leaves room for the GIL (5 ms switch
    # interval, shared with the output thread) and a preempted thread on a loaded 2-core machine.
    assert engine.worst_handle_ms < 30
    assert destroy_s < 2.0
    assert not [e for e in ctx.errors if not e.recoverable]

    audio = engine.of("AVATAR_AUDIO")
    assert audio and all(d.data.get_main_data().dtype == np.float32 and d.data.get_main_data().ndim == 2
                         and d.data.get_main_data().shape[0] == 1 for d, _ in audio)
    assert all(d.data.get_main_definition_entry().sample_rate == 24000 for d, _ in audio)
    ends = [d for d, _ in audio if d.data.get_meta("avatar_speech_end")]
    speech_ids = list(dict.fromkeys(d.data.get_meta("speech_id") for d, _ in audio))
    assert len(ends) == len(speech_ids) >= 3  # every reply closes its audio stream
    assert all(d.data.get_main_data().shape == (1, 240) and not d.data.get_main_data().any() for d in ends)
    texts = engine.of("AVATAR_TEXT")
    assert [d.data.get_main_data() for d, _ in texts if d.data.get_meta("avatar_text_end")] == [""] * len(ends)
    human = engine.of("HUMAN_TEXT")
    assert [d.data.get_main_data() for d, _ in human][:2] == ["turn 1: 1.0 seconds of speech", ""]
    assert [d.data.get_meta("human_text_end") for d, _ in human][:2] == [False, True]
    assert engine.session.shared_states.enable_vad  # audio-only classic mode: re-enabled after a reply

    from sonic_bridge import BridgeState
    assert BridgeState.RENEWING in ctx.states  # and the turn after it was still answered:
    assert any("turn 4" in d.data.get_main_data() for d, _ in human)
    if generation == "stream":
        assert [f for _, f in audio if f] == [True] * len(ends)  # finish_stream only on the end markers
        assert len(engine.signals) == 1 and engine.signals[0].type.name == "INTERRUPT"
        assert engine.signals[0].source_name == "NovaSonic"
    assert len(ctx.interrupted) == 1


def test_handle_never_raises_on_bad_input(oac: Any, monkeypatch: pytest.MonkeyPatch, handler_log: list[str]) -> None:
    from chat_engine.data_models.chat_data.chat_data_model import ChatData
    from chat_engine.data_models.chat_data_type import ChatDataType
    from chat_engine.data_models.runtime_data.data_bundle import DataBundle, DataBundleDefinition, DataBundleEntry

    engine = Engine(oac, {"backend": "fake"}, "classic", monkeypatch)
    try:
        definition = DataBundleDefinition()
        definition.add_entry(DataBundleEntry.create_audio_entry("mic_audio", 1, 16000))
        bundle = DataBundle(definition)
        bundle.set_main_data(np.full((1, 320), np.nan, np.float32))
        engine.handler.handle(engine.context, ChatData(type=ChatDataType.MIC_AUDIO, data=bundle), {})
        assert any("could not take an input chunk" in line and "Traceback" in line for line in handler_log)
    finally:
        engine.handler.destroy_context(engine.context)


def test_human_audio_segments_from_the_vad_get_answered(oac: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chat_engine.data_models.chat_data.chat_data_model import ChatData
    from chat_engine.data_models.chat_data_type import ChatDataType
    from chat_engine.data_models.runtime_data.data_bundle import DataBundle, DataBundleDefinition, DataBundleEntry

    engine = Engine(oac, {"backend": "fake", "input_mode": "HUMAN_AUDIO", "turn_sensitivity": "HIGH"}, "classic",
                    monkeypatch)
    assert ChatDataType.HUMAN_AUDIO in engine.detail.inputs
    definition = DataBundleDefinition()
    definition.add_entry(DataBundleEntry.create_audio_entry("human_audio", 1, 16000))
    speech = synth_utterance(1.0, 16000, seed=5)  # float32 in [-1, 1], 512-sample clips, speech only
    try:
        start = time.monotonic()
        for n, i in enumerate(range(0, len(speech), 512)):
            bundle = DataBundle(definition)
            bundle.set_main_data(speech[i : i + 512].reshape(1, -1))
            bundle.add_meta("speech_id", "speech-s1-0")
            bundle.add_meta("human_speech_end", i + 512 >= len(speech))
            engine.handler.handle(engine.context, ChatData(type=ChatDataType.HUMAN_AUDIO, data=bundle), {})
            time.sleep(max(0.0, start + (n + 1) * 0.032 - time.monotonic()))  # real time
        deadline = time.monotonic() + 8  # no more input: the handler feeds the silence that ends the turn
        while time.monotonic() < deadline and not any(d.data.get_meta("avatar_speech_end")
                                                      for d, _ in engine.of("AVATAR_AUDIO")):
            time.sleep(0.05)
    finally:
        engine.handler.destroy_context(engine.context)
    assert [d.data.get_main_data() for d, _ in engine.of("HUMAN_TEXT")][:1] == ["turn 1: 1.0 seconds of speech"]
    assert any(d.data.get_meta("avatar_speech_end") for d, _ in engine.of("AVATAR_AUDIO"))


def test_a_failed_session_stops_its_output_thread_and_drops_input_quietly(
        oac: Any, monkeypatch: pytest.MonkeyPatch, handler_log: list[str]) -> None:
    from chat_engine.data_models.chat_data.chat_data_model import ChatData
    from chat_engine.data_models.chat_data_type import ChatDataType
    from chat_engine.data_models.runtime_data.data_bundle import DataBundle, DataBundleDefinition, DataBundleEntry

    psutil = pytest.importorskip("psutil")
    # A worker interpreter that cannot run: the bridge fails for good at once.
    engine = Engine(oac, {"backend": "fake", "worker_python": "/bin/false"}, "stream", monkeypatch)
    definition = DataBundleDefinition()
    definition.add_entry(DataBundleEntry.create_audio_entry("mic_audio", 1, 16000))
    try:
        thread = engine.context.output_thread
        thread.join(timeout=10)
        assert not thread.is_alive(), "the output thread must end when the session ends"
        me = psutil.Process()
        cpu_before = sum(me.cpu_times()[:2])
        start = time.monotonic()
        chunks = 0
        while time.monotonic() - start < 2.0:  # the engine keeps delivering mic chunks
            bundle = DataBundle(definition)
            bundle.set_main_data(np.zeros((1, 960), np.int16))
            engine.handler.handle(engine.context, ChatData(type=ChatDataType.MIC_AUDIO, data=bundle), {})
            chunks += 1
            time.sleep(0.06)
        cpu = sum(me.cpu_times()[:2]) - cpu_before
    finally:
        engine.handler.destroy_context(engine.context)
    assert cpu < 0.3, f"{cpu:.2f} s of CPU in 2 s on a closed session"
    assert engine.context.dropped_closed == chunks
    assert [e.code for e in engine.context.errors] == ["worker_start_failed"]
    assert not [line for line in handler_log if "Traceback" in line]
    assert sum("ended (worker_start_failed)" in line for line in handler_log) == 1


def test_handler_and_library_logs_reach_loguru_with_their_levels(oac: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    loguru = pytest.importorskip("loguru")
    lines: list[tuple[str, str]] = []
    sink = loguru.logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])), level="DEBUG")
    target = logging.getLogger("sonic_bridge")
    monkeypatch.setattr(target, "handlers", [])
    monkeypatch.setattr(target, "propagate", True)
    monkeypatch.setattr(target, "level", logging.NOTSET)
    try:
        engine = Engine(oac, {"backend": "fake"}, "stream", monkeypatch)  # load() routes the logging
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any("ready" in m for _, m in lines):
                time.sleep(0.05)
            logging.getLogger("sonic_bridge.worker.runner").warning("a worker warning")
        finally:
            engine.handler.destroy_context(engine.context)
    finally:
        loguru.logger.remove(sink)
    assert ("INFO", "sonic_bridge.openavatarchat: Nova Sonic session s1: ready") in lines
    assert ("WARNING", "sonic_bridge.worker.runner: a worker warning") in lines
    assert target.propagate is False  # never twice, when the host has both


def test_a_later_session_starts_from_a_prestarted_worker(oac: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sonic_bridge import BridgeState

    engine = Engine(oac, {"backend": "fake", "prestart_workers": 1}, "stream", monkeypatch)
    engine.handler.destroy_context(engine.context)  # the first visitor came before the pool was warm
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and engine.handler._pool.idle < 1:  # the engine idles between visitors
        time.sleep(0.05)
    context = engine.handler.create_context(engine.session, engine.config)
    context.submit_data = lambda data, finish_stream=None: None
    start = time.monotonic()
    engine.handler.start_context(engine.session, context)
    try:
        while time.monotonic() - start < 10 and BridgeState.READY not in context.states:
            time.sleep(0.005)
        took = time.monotonic() - start
    finally:
        engine.handler.destroy_context(context)
    assert BridgeState.READY in context.states and took < 0.5, f"{took:.3f} s to READY"


def test_sessions_share_worker_processes_when_asked(oac: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sonic_bridge import BridgeState

    engine = Engine(oac, {"backend": "fake", "turn_sensitivity": "HIGH", "sessions_per_worker": 4}, "stream",
                    monkeypatch)
    group = engine.handler._group
    assert group is not None and engine.handler._pool is None
    contexts = [engine.context]
    try:
        for _ in range(2):  # two more visitors join the first one's process
            context = engine.handler.create_context(engine.session, engine.config)
            context.submit_data = lambda data, finish_stream=None: None
            engine.handler.start_context(engine.session, context)
            contexts.append(context)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(BridgeState.READY in c.states for c in contexts):
            time.sleep(0.01)
        assert all(BridgeState.READY in c.states for c in contexts)
        assert len({c.bridge.worker_pid for c in contexts}) == 1 and group.sessions == 3
        # The first visitor speaks; the shared process hears it as that session's turn.
        engine.mic(np.concatenate([synth_utterance(1.0, 16000, seed=1), np.zeros(int(16000 * 2.5), np.float32)]))
        assert [d.data.get_main_data() for d, _ in engine.of("HUMAN_TEXT")][:1] == ["turn 1: 1.0 seconds of speech"]
    finally:
        for context in contexts:
            engine.handler.destroy_context(context)
    assert group.sessions == 0
    pids = group.pids
    engine.handler.destroy()  # the engine's shutdown ends the shared processes by their pids
    assert pids and not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_camera_video_frames_are_seen_when_the_user_asks(oac: Any, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """enable_video_input: CAMERA_VIDEO ([1, H, W, 3] BGR, 30 fps, its own thread) reaches the look tool; a
    spoken "what do you see?" is answered from the frames, as the avatar's voice and text."""
    import threading

    from chat_engine.data_models.chat_data.chat_data_model import ChatData
    from chat_engine.data_models.chat_data_type import ChatDataType
    from chat_engine.data_models.runtime_data.data_bundle import (
        DataBundle,
        DataBundleDefinition,
        DataBundleEntry,
        VariableSize,
    )

    from sonic_bridge.fake import speech

    # No Pillow needed here: the host only copies frames; the worker encodes them (its environment has Pillow).
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 2, "thinking_ms": [200, 200]}))
    engine = Engine(oac, {"backend": "fake", "turn_sensitivity": "HIGH", "fake_scenario": str(scenario),
                          "enable_video_input": True, "video_frame_interval_ms": 250}, "stream", monkeypatch)
    assert ChatDataType.CAMERA_VIDEO in engine.detail.inputs
    definition = DataBundleDefinition()
    definition.add_entry(DataBundleEntry.create_framed_entry(
        "camera_video", [VariableSize(), VariableSize(), VariableSize(), 3], 0, 30))
    red_bgr = np.zeros((1, 480, 640, 3), np.uint8)
    red_bgr[..., 2] = 255  # OpenAvatarChat's frames are BGR: this is red
    stop = threading.Event()
    worst_frame_ms = [0.0]

    def camera() -> None:
        while not stop.is_set():
            bundle = DataBundle(definition)
            bundle.set_main_data(red_bgr)
            t0 = time.perf_counter()
            engine.handler.handle(engine.context, ChatData(type=ChatDataType.CAMERA_VIDEO, data=bundle), {})
            worst_frame_ms[0] = max(worst_frame_ms[0], (time.perf_counter() - t0) * 1000)
            time.sleep(1 / 30)

    thread = threading.Thread(target=camera)
    thread.start()
    ctx = engine.context
    try:
        engine.mic(np.zeros(16000, np.float32))  # a second of camera before the question
        engine.mic(np.concatenate([speech.say("what do you see?"), np.zeros(16000 * 3, np.float32)]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (ctx.looks and any(
                d.data.get_meta("avatar_speech_end") for d, _, at in engine.submitted
                if d.type.name == "AVATAR_AUDIO" and at > 0)):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
        engine.handler.destroy_context(ctx)
    (look,) = ctx.looks
    assert look.question == "what do you see?" and not look.error
    assert look.answer.startswith("I see 4 images.") or look.answer.startswith("I see 5 images.")
    assert look.answer.count("640x480, mostly red") == len(look.frame_ages)  # BGR taken as BGR
    assert [d.data.get_main_data() for d, _ in engine.of("HUMAN_TEXT")][:1] == ["what do you see?"]
    assert look.answer in "".join(d.data.get_main_data() for d, _ in engine.of("AVATAR_TEXT"))  # whole or in pieces
    assert any(d.data.get_meta("avatar_speech_end") for d, _ in engine.of("AVATAR_AUDIO"))
    assert worst_frame_ms[0] < 30 and not ctx.errors and ctx.bad_frames == 0
    stats = ctx.bridge.stats()
    assert stats.video_frames_in > 60 and 0 < stats.video_frames_kept < stats.video_frames_in / 4


def test_the_camera_yaml_example_is_a_valid_configuration(oac: Any) -> None:
    import yaml

    raw = yaml.safe_load((ROOT / "examples/openavatarchat_handler/config/chat_with_nova_sonic_camera.yaml").read_text())
    handler = raw["default"]["chat_engine"]["handler_configs"]["NovaSonic"]
    (cls,) = concrete_handlers(oac)
    config = cls().get_handler_info().config_model.model_validate(handler)
    vision = config.bridge_config().vision
    assert vision.enabled and vision.frame_interval_s == 1.0 and vision.frames_for_look == 5
    with pytest.raises(ValueError, match="video_frame_interval_ms"):
        cls().get_handler_info().config_model.model_validate({**handler, "video_frame_interval_ms": 100})


@pytest.mark.sdk
def test_a_cascade_session_audio_texts_markers_and_barge_in(oac: Any, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """engine: cascade (Transcribe -> Nova -> Polly on their fakes, behind the real clients): the handler gives the
    engine the same outputs as with Sonic: the user's words, the avatar's audio with its text, end markers, and
    a reply cut short when the user speaks over it."""
    # (The worker needs the cascade's clients, not the host: a 3.11 host has no AWS package at all.)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 3, "thinking_ms": [300, 300]}))
    engine = Engine(oac, {"backend": "fake", "engine": "cascade", "fake_scenario": str(scenario),
                          "cascade": {"voice": "Joanna", "polly_engine": "neural"}}, "stream", monkeypatch)
    silence = np.zeros(16000, np.float32)
    ctx = engine.context
    try:
        # Turn 1's reply (about 3.5 s of audio) has played to its end before turn 2 starts.
        engine.mic(np.concatenate([synth_utterance(1.0, 16000, seed=1), *[silence] * 6]))
        engine.mic(np.concatenate([synth_utterance(1.2, 16000, seed=2), silence[:14000]]))  # the reply starts...
        engine.mic(np.concatenate([synth_utterance(0.8, 16000, seed=3), silence, silence, silence, silence]))
    finally:
        engine.handler.destroy_context(ctx)
    assert not [e for e in ctx.errors if not e.recoverable]
    human = [d.data.get_main_data() for d, _ in engine.of("HUMAN_TEXT")]
    assert [h for h in human if h][:3] == ["turn 1: 1.0 seconds of speech", "turn 2: 1.2 seconds of speech",
                                          "turn 3: 0.8 seconds of speech"], human
    audio = engine.of("AVATAR_AUDIO")
    assert all(d.data.get_main_definition_entry().sample_rate == 24000 for d, _ in audio)
    ends = [d for d, _ in audio if d.data.get_meta("avatar_speech_end")]
    speech_ids = list(dict.fromkeys(d.data.get_meta("speech_id") for d, _ in audio))
    assert len(ends) == len(speech_ids) >= 2  # every reply, the interrupted one too, closes its audio stream
    spoken = "".join(d.data.get_main_data() for d, _ in engine.of("AVATAR_TEXT"))
    assert 'You said: "turn 1: 1.0 seconds of speech". This is my answer to turn 1.' in spoken
    assert "This is my answer to turn 3." in spoken
    assert len(ctx.interrupted) == 1 and len(engine.signals) == 1 and engine.signals[0].type.name == "INTERRUPT"
    assert engine.worst_handle_ms < 30
