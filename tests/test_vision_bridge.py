"""Vision through the bridge: a spoken turn makes the model look, the newest sampled frames reach Converse,
the answer is spoken and the session goes on; failures of the vision model never end the conversation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SonicBridge
from sonic_bridge import events as ev
from sonic_bridge.fake import speech
from sonic_bridge.vision.settings import VisionSettings
from tests.vision_host import Host, answered_colours, reply_audio_after

pytest.importorskip("PIL")
INTERVAL = 0.25
VISION = VisionSettings(enabled=True, frame_interval_s=INTERVAL, window=8)


def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")


def bridge_for(door: str, tmp_path: Path, stack: Any, scenario: dict[str, Any] | None = None,
               vision: VisionSettings = VISION) -> SonicBridge:
    raw = {"time_scale": 0.2, **(scenario or {})}
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(raw))
    if door == "tls-server":
        from tests.fake_server import fake_server

        server = stack.enter_context(fake_server(tmp_path, "--scenario", str(path)))
        config = BridgeConfig(backend="aws", endpoint=server.url, ca_file=server.ca, vision=vision)
    else:
        config = BridgeConfig(fake=FakeOptions(via_sdk=door == "sdk", scenario=str(path)), vision=vision)
    return stack.enter_context(SonicBridge(config))


def answered(host: Host, count: int) -> bool:
    return len(host.replies()) >= count


@pytest.mark.sdk
@pytest.mark.parametrize("door", ["sdk", "tls-server"])
def test_a_spoken_question_is_answered_from_the_newest_frames_and_the_session_goes_on(
        door: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    pytest.importorskip("aws_sdk_bedrock_runtime")
    fake_credentials(monkeypatch)
    with contextlib.ExitStack() as stack:
        host = Host(bridge_for(door, tmp_path, stack), INTERVAL)
        host.run_until(lambda events: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY
                                          for e in events), timeout=60)
        for _ in range(150):  # three seconds of camera: the window fills up (8 frames)
            host.cycle()
            host.pause()
        host.say("what do you see?")
        host.run_until(lambda _: answered(host, 1))
        (look,) = host.looks()
        assert look.question == "what do you see?" and look.model_id == "us.amazon.nova-2-lite-v1:0"
        assert len(look.frame_ages) == 5 and look.frame_ages[-1] < 2 * INTERVAL + 0.3  # the newest frames
        assert list(look.frame_ages) == sorted(look.frame_ages, reverse=True)  # oldest first
        colours = answered_colours(look.answer)
        assert colours == host.expected_colours(look)  # exactly the frames the ages name, in order
        assert "grey" not in look.answer  # frames the sampler dropped never reach the model
        assert host.replies()[-1] == look.answer  # the model speaks the answer ...
        heard = speech.hear(reply_audio_after(host.events, look), 16000) or ""
        spoken = "".join(c for c in look.answer.lower() if c in speech.ALPHABET)  # what its alphabet can say
        assert heard.startswith(spoken[:60])  # ... in its voice
        assert not [e for e in host.events if isinstance(e, ev.Warning | ev.Error)]
        host.say("thank you")  # and the conversation goes on
        host.run_until(lambda _: answered(host, 2))
        assert host.replies()[-1].startswith("You spoke for") and len(host.looks()) == 1
        stats = host.bridge.stats()
        assert stats.video_frames_kept == len(host.kept) and stats.video_frames_dropped == (
            stats.video_frames_in - stats.video_frames_kept) > 0


@pytest.mark.sdk
def test_vision_failures_leave_the_conversation_alive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No frame yet, then the vision model throttled, then denied: each look is answered 'unavailable' with a
    Warning, the model says so, and the next look works."""
    import contextlib

    pytest.importorskip("aws_sdk_bedrock_runtime")
    fake_credentials(monkeypatch)
    scenario = {"looks": [{"fault": "throttle"}, {"fault": "access_denied"}]}
    with contextlib.ExitStack() as stack:
        host = Host(bridge_for("sdk", tmp_path, stack, scenario), INTERVAL, camera=False)
        host.say("can you see me?")
        host.run_until(lambda _: answered(host, 1), timeout=60)
        host.camera = True
        for n, question in enumerate(["what do you see?", "look at this", "what am I holding?"], start=2):
            for _ in range(30):
                host.cycle()
                host.pause()
            host.say(question)
            host.run_until(lambda _, n=n: answered(host, n))
        looks = host.looks()
        assert [bool(look.error) for look in looks] == [True, True, True, False]
        assert "no camera frame has arrived yet" in looks[0].error
        assert "is throttling requests" in looks[1].error
        assert "access to us.amazon.nova-2-lite-v1:0 was denied" in looks[2].error
        assert "grant bedrock:InvokeModel" in looks[2].error
        warnings = [e for e in host.events if isinstance(e, ev.Warning)]
        assert [w.code for w in warnings] == ["vision_unavailable"] * 3
        assert all(r.startswith("Sorry, I cannot see right now") for r in host.replies()[:3])
        assert host.replies()[3] == looks[3].answer and answered_colours(looks[3].answer)
        assert not [e for e in host.events if isinstance(e, ev.Error)]
        assert host.bridge.state is ev.BridgeState.READY


def test_the_conversation_keeps_flowing_while_the_vision_model_thinks(tmp_path: Path) -> None:
    """Nova 2 asynchronous tools: a typed turn is answered while a slow look is still running."""
    import contextlib

    with contextlib.ExitStack() as stack:
        host = Host(bridge_for("direct", tmp_path, stack, {"looks": [{"delay_ms": 15000}]}), INTERVAL)  # 3 s
        for _ in range(40):
            host.cycle()
            host.pause()
        host.say("what do you see?")
        host.run_until(lambda events: any(isinstance(e, ev.Transcript) and e.role is ev.Role.USER for e in events))
        time.sleep(0.3)
        host.bridge.send_text("are you still there?")
        host.run_until(lambda _: answered(host, 2), timeout=30)
        typed = next(i for i, e in enumerate(host.events) if isinstance(e, ev.Transcript)
                     and e.role is ev.Role.ASSISTANT and e.stage is ev.Stage.FINAL)
        look = next(i for i, e in enumerate(host.events) if isinstance(e, ev.Look))
        assert typed < look, "the typed turn waited for the look"
        assert host.replies()[0] == "I am still working on that, one moment please."  # the fake's filler
        assert host.replies()[1] == host.looks()[0].answer
        assert host.looks()[0].latency >= 2.5 and not host.looks()[0].error


def test_a_typed_question_looks_and_a_scenario_can_make_any_turn_look(tmp_path: Path) -> None:
    import contextlib

    from tests.helpers import tone

    scenario = {"turns": [{}, {"tool": "look_at_camera", "arguments": {"question": "Is it sunny?"}}]}
    with contextlib.ExitStack() as stack:
        host = Host(bridge_for("direct", tmp_path, stack, scenario), INTERVAL)
        host.run_until(lambda events: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY
                                          for e in events), timeout=60)
        for _ in range(20):
            host.cycle()
            host.pause()
        host.bridge.send_text("What am I holding?")  # typed: turn 1 asks to look by its words
        host.run_until(lambda _: answered(host, 1))
        host._speech += [tone(0.8)[i : i + 320] for i in range(0, 12800, 320)] + [np.zeros(320, np.float32)] * 60
        host.run_until(lambda _: answered(host, 2))  # a wordless utterance: turn 2 looks because the plan says so
        assert [look.question for look in host.looks()] == ["What am I holding?", "Is it sunny?"]
        assert all(answered_colours(look.answer) for look in host.looks())
        assert host.replies() == [look.answer for look in host.looks()]


def test_push_video_refuses_bad_frames_and_needs_vision(tmp_path: Path) -> None:
    with SonicBridge(BridgeConfig(vision=VisionSettings(enabled=True, max_frame_bytes=64 * 64 * 3))) as bridge:
        with pytest.raises(ValueError, match=r"a 65x64 video frame \(12480 bytes\) is larger than "
                                             r"vision.max_frame_bytes=12288"):
            bridge.push_video(np.zeros((64, 65, 3), np.uint8))
        with pytest.raises(ValueError, match=r"pixel_format must be one of \('rgb24', 'bgr24'\), got 'yuv'"):
            bridge.push_video(np.zeros((8, 8, 3), np.uint8), pixel_format="yuv")
        with pytest.raises(ValueError, match=r"timestamp must be a time\.monotonic"):
            bridge.push_video(np.zeros((8, 8, 3), np.uint8), timestamp=float("nan"))
        assert bridge.push_video(np.zeros((1, 8, 8, 3), np.uint8))
        assert not bridge.push_video(np.zeros((8, 8, 3), np.uint8))  # the same interval: not kept
        stats = bridge.stats()
        assert (stats.video_frames_in, stats.video_frames_kept, stats.video_frames_dropped) == (2, 1, 1)
    assert not bridge.push_video(np.zeros((8, 8, 3), np.uint8))  # closed: quiet
    assert bridge.stats().dropped_after_close == 1
    with SonicBridge(BridgeConfig()) as plain, pytest.raises(ValueError, match="push_video needs vision"):
        plain.push_video(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.slow
@pytest.mark.sdk
def test_half_a_minute_of_30_fps_keeps_host_calls_in_microseconds_and_worker_memory_flat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    import psutil

    pytest.importorskip("aws_sdk_bedrock_runtime")
    fake_credentials(monkeypatch)
    with contextlib.ExitStack() as stack:
        bridge = bridge_for("sdk", tmp_path, stack, {"time_scale": 1.0})  # no silence limit within the run
        host = Host(bridge, INTERVAL, width=1280, height=720)
        worker = psutil.Process(bridge.worker_pid)
        started = time.monotonic()
        rss: dict[int, int] = {}
        next_frame = started
        while (elapsed := time.monotonic() - started) < 30:
            now = time.monotonic()
            if now >= next_frame:  # 30 fps
                host._push_frame(now)
                next_frame += 1 / 30
            if len(host.push_ns) % 15 == 0:
                host.bridge.push_audio(np.zeros(320, np.float32), 16000)  # the session stays alive
                host.events += host.bridge.poll()
            for mark in (8, 29):
                if elapsed >= mark and mark not in rss:
                    rss[mark] = worker.memory_info().rss
            time.sleep(max(0.0, min(next_frame - time.monotonic(), 0.01)))
        pushes = np.array(host.push_ns) / 1000
        kept = len(host.kept)
        p50 = float(np.percentile(pushes, 50))
        print(f"\npush_video 1280x720 at 30 fps for 30 s: {len(pushes)} calls, {kept} kept, "
              f"p50 {p50:.1f} us, p99 {np.percentile(pushes, 99):.1f} us, max {pushes.max():.0f} us; "
              f"worker RSS {rss[8] >> 20} MB at 8 s, {rss[29] >> 20} MB at 29 s")
        assert len(pushes) > 750 and kept >= 100
        # Back to back a dropped frame costs ~2 us; paced at 30 fps every call starts cold (a no-op function call
        # after a sleep costs ~10 us on the 2-core test machine): the bound is generous for a loaded machine.
        assert p50 < 300, "a dropped frame must cost microseconds"
        assert pushes.max() < 50_000, "a kept frame is one copy, never milliseconds of work"
        assert rss[29] - rss[8] < 40 << 20, "worker memory must stay flat"
        assert host.bridge.stats().video_frames_kept == kept
        assert not [e for e in host.events if isinstance(e, ev.Error)]
        assert os.path.exists(f"/proc/{bridge.worker_pid}")
