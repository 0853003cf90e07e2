"""Vision's pieces by plain calls: settings, sampler, window, encoder, the look tool, its event."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, SessionSettings, Tool
from sonic_bridge import events as ev
from sonic_bridge.fake import looking, speech
from sonic_bridge.fake.scenario import TurnPlan
from sonic_bridge.ipc import codec
from sonic_bridge.vision.camera import Camera
from sonic_bridge.vision.converse import VisionError
from sonic_bridge.vision.encoder import encode_jpeg, target_size
from sonic_bridge.vision.look import LookTool, session_with_look
from sonic_bridge.vision.sampler import KeepEvery
from sonic_bridge.vision.settings import VisionSettings, image_limit
from sonic_bridge.vision.slot import FrameSlot
from sonic_bridge.vision.window import FrameWindow, Shot, spread

pytest.importorskip("PIL")


# ------------------------------------------------------------------ settings
def test_defaults_are_the_issues_and_k_is_the_models_image_limit() -> None:
    v = VisionSettings(enabled=True)
    assert (v.frame_interval_s, v.max_side, v.window, v.model_id, v.tool_name) == (
        1.0, 640, 20, "us.amazon.nova-2-lite-v1:0", "look_at_camera")
    assert v.frames_for_look == 5 == image_limit("global.amazon.nova-2-lite-v1:0")
    assert VisionSettings(model_id="us.amazon.nova-pro-v1:0").frames_for_look == 20
    assert VisionSettings(model_id="us.amazon.nova-pro-v1:0", window=8).frames_for_look == 8  # never more than held


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"frame_interval_s": 0.1}, r"vision.frame_interval_s must be a number from 0.25 to 60 seconds, got 0.1"),
    ({"frame_interval_s": float("nan")}, "vision.frame_interval_s"),
    ({"max_side": 10}, r"vision.max_side must be a whole number from 64 to 8000 pixels, got 10"),
    ({"window": 0}, "vision.window"),
    ({"frames_per_look": 6}, r"vision.frames_per_look must be a whole number from 1 to 5 \(the per-request image "
     r"limit of us.amazon.nova-2-lite-v1:0\), got 6"),
    ({"tool_name": "look at"}, "vision.tool_name must be 1 to 64 letters"),
    ({"enabled": 1}, r"vision.enabled must be True or False, got 1"),
    ({"model_id": "nova lite"}, "without spaces"),
    ({"max_frame_bytes": 100}, "vision.max_frame_bytes"),
    ({"stale_after_s": 0}, "vision.stale_after_s"),
])
def test_bad_settings_are_refused_by_name_value_and_range(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VisionSettings(**kwargs)


def test_vision_survives_the_json_trip_to_the_worker() -> None:
    config = BridgeConfig(vision=VisionSettings(enabled=True, frame_interval_s=0.5, window=7, frames_per_look=3,
                                                tool_name="peek", instructions="Use {tool}."))
    assert BridgeConfig.from_json(json.loads(config.dumps())) == config
    with pytest.raises(ValueError, match=r"vision has unknown keys \['colour'\]"):
        BridgeConfig.from_json({"vision": {"colour": 1}})


def test_the_look_tool_cannot_share_a_name_with_a_host_tool() -> None:
    tool = Tool("look_at_camera", "mine", {"type": "object"})
    with pytest.raises(ValueError, match=r"vision\.tool_name 'look_at_camera' is also the name of a session tool"):
        BridgeConfig(session=SessionSettings(tools=(tool,)), vision=VisionSettings(enabled=True))
    BridgeConfig(session=SessionSettings(tools=(tool,)), vision=VisionSettings(enabled=False))  # off: no clash


def test_the_session_gets_the_look_tool_and_its_instructions_next_to_host_tools() -> None:
    host_tool = Tool("get_weather", "Weather", {"type": "object"})
    session = session_with_look(SessionSettings(system_prompt="Be brief.", tools=(host_tool,)),
                                VisionSettings(enabled=True, tool_name="peek"))
    assert [t.name for t in session.tools] == ["get_weather", "peek"]
    assert session.tools[1].input_schema["required"] == ["question"]
    prompt = session.system_prompt
    assert prompt.startswith("Be brief.\n\n") and "call peek with their question" in prompt


# ------------------------------------------------------------------ sampler and window
def test_the_sampler_keeps_one_frame_per_interval_of_capture_time() -> None:
    keep = KeepEvery(1.0)
    times = [i / 30 for i in range(91)]  # 3 s at 30 fps
    kept = [t for t in times if keep.keep(t)]
    assert kept == [0.0, 1.0, 2.0, 3.0]
    assert keep.keep(0.5)  # the clock went back (a restarted video): kept, and counted from there
    assert not keep.keep(0.9)


def shot(n: int, t: float) -> Shot:
    return Shot(n, b"", 1, 1, t)


def test_the_window_forgets_old_frames_and_a_look_spreads_evenly_with_the_newest_last() -> None:
    window = FrameWindow(20)
    for n in range(1, 31):
        window.add(shot(n, float(n)))
    assert len(window) == 20 and window.shots()[0].number == 11  # frames older than the window are gone
    assert [s.number for s in window.pick(5)] == [11, 16, 21, 25, 30]
    assert [s.number for s in window.pick(1)] == [30]
    assert [s.number for s in spread([shot(1, 0), shot(2, 1)], 5)] == [1, 2]
    assert spread([], 5) == []


# ------------------------------------------------------------------ encoder
@pytest.mark.parametrize(("size", "expected"), [((640, 480), (640, 480)), ((1280, 720), (640, 360)),
                                                ((1920, 1080), (640, 360)), ((1024, 768), (640, 480)),
                                                ((480, 1000), (307, 640))])
def test_frames_are_downscaled_to_the_maximum_side(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert target_size(*size, 640) == expected


def test_a_bgr_frame_becomes_a_jpeg_of_the_right_size_and_colour() -> None:
    from PIL import Image

    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[..., 2] = 255  # red in BGR
    jpeg, width, height = encode_jpeg(frame, "bgr24", 640, 80)
    image = Image.open(io.BytesIO(jpeg))
    assert (image.format, image.size, (width, height)) == ("JPEG", (640, 360), (640, 360))
    r, g, b = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15


# ------------------------------------------------------------------ the look tool
class Model:
    def __init__(self, *, fail: VisionError | None = None, delay: float = 0.0) -> None:
        self.fail, self.delay = fail, delay
        self.calls: list[tuple[str, int]] = []

    async def describe(self, model_id: str, prompt: str, question: str, images: list[bytes], max_tokens: int) -> str:
        self.calls.append((question, len(images)))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return f"{len(images)} frames"


def look_with(model: Model | None, frames: int, *, interval_s: float = 1.0, now: float = 100.0,
              **settings: Any) -> tuple[LookTool, FrameSlot]:
    vision = VisionSettings(enabled=True, frame_interval_s=max(0.25, interval_s), **settings)
    slot = FrameSlot.create(64 * 64 * 3)
    camera = Camera(slot, vision)
    for i in range(frames):
        camera.window.add(Shot(i + 1, b"jpeg", 64, 64, 100.0 - (frames - 1 - i) * interval_s))
    camera._last = frames
    return LookTool(vision, camera, model, clock=lambda: now), slot


def test_a_look_sends_k_frames_and_returns_the_answer_with_the_frames_ages() -> None:
    model = Model()
    tool, slot = look_with(model, 12)
    try:
        result = asyncio.run(tool.answer("t1", {"question": "What am I holding?"}))
    finally:
        slot.close()
    assert model.calls == [("What am I holding?", 5)]
    assert json.loads(result.content) == {"camera": "available", "answer": "5 frames", "frames": 5,
                                          "newest_frame_age_s": 0.0}
    assert result.event.frame_ages == (11.0, 8.0, 5.0, 3.0, 0.0) and result.warning is None
    assert result.event.answer == "5 frames" and not result.event.error


@pytest.mark.parametrize(("frames", "model", "now", "reason"), [
    (0, Model(), 100.0, "no camera frame has arrived yet"),
    (3, Model(), 130.0, "the camera has sent no frame for 30.0 s"),
    (3, Model(fail=VisionError("ThrottlingException", "Too many requests")), 100.0, "is throttling requests"),
    (3, Model(fail=VisionError("AccessDeniedException", "no")), 100.0, "grant bedrock:InvokeModel"),
    (3, Model(delay=5.0), 100.0, "gave no answer within 1 s"),
    (3, None, 100.0, "this backend has no vision model"),
])
def test_a_failed_look_tells_the_model_the_camera_is_unavailable_and_warns_the_host(
        frames: int, model: Model | None, now: float, reason: str) -> None:
    tool, slot = look_with(model, frames, now=now, look_timeout_s=1.0)
    try:
        result = asyncio.run(tool.answer("t1", {}))
    finally:
        slot.close()
    content = json.loads(result.content)
    assert content["camera"] == "unavailable" and reason in content["reason"]
    assert result.warning is not None and result.warning.code == "vision_unavailable"
    assert reason in result.warning.message
    assert result.event.question == "What do you see?" and reason in result.event.error and not result.event.answer


def test_a_look_takes_the_newest_frame_from_the_slot_first() -> None:
    model = Model()
    tool, slot = look_with(model, 0)
    try:
        slot.write(np.full((64, 64, 3), 200, np.uint8), "rgb24", int(99.5e9))
        result = asyncio.run(tool.answer("t1", {"question": "hi"}))
    finally:
        slot.close()
    assert model.calls == [("hi", 1)] and result.event.frame_ages == (0.5,)


def test_the_look_event_crosses_the_ring_encoding() -> None:
    event = ev.Look("id", "what?", "us.amazon.nova-2-lite-v1:0", (3.25, 0.5), 0.812, "a red wall", "")
    assert codec.decode(codec.encode(event)) == event
    failed = ev.Look("id", "what?", "m", (), 0.0, "", "no camera frame has arrived yet")
    assert codec.decode(codec.encode(failed)) == failed


# ------------------------------------------------------------------ the fake's words and looks
def test_the_fake_hears_words_said_in_its_tone_alphabet_and_nothing_else() -> None:
    assert speech.hear(speech.say("What do you see?"), 16000) == "what do you see?"
    t = np.arange(16000) / 16000
    assert speech.hear((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000) is None
    assert speech.hear(np.zeros(16000, np.float32), 16000) is None


def test_the_fake_looks_when_a_turn_asks_and_a_look_tool_is_registered() -> None:
    spec = {"toolSpec": {"name": "peek", "inputSchema": {"json": json.dumps({"required": ["question"]})}}}
    assert looking.look_tool_in([spec]) == "peek"
    assert looking.look_tool_in([{"toolSpec": {"name": "get_weather", "inputSchema": {"json": "{}"}}}]) is None
    plan = looking.with_look(TurnPlan(), "what do you see", "peek")
    assert (plan.tool, plan.arguments) == ("peek", {"question": "what do you see"})
    assert looking.with_look(TurnPlan(), "hello there", "peek").tool is None
    assert looking.with_look(TurnPlan(fault="throttle"), "look", "peek").tool is None
    assert looking.spoken_result(json.dumps({"camera": "available", "answer": "A cat."})) == "A cat."
    assert "cannot see" in looking.spoken_result(json.dumps({"camera": "unavailable", "reason": "x"}))
