"""SonicBridge as a host uses it: loopback worker, validation, never-blocking, death, restart."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from sonic_bridge import BridgeClosed, BridgeConfig, SonicBridge
from sonic_bridge import events as ev
from sonic_bridge.settings import SessionSettings
from tests.helpers import has_state, process_alive, run_until


def loopback(**kw: object) -> SonicBridge:
    return SonicBridge(BridgeConfig(backend="loopback", **kw))  # type: ignore[arg-type]


def test_audio_goes_through_the_worker_and_comes_back_converted() -> None:
    with loopback(output_sample_rate=48000) as bridge:
        frame = (np.sin(np.arange(320) / 3) * 8000).astype(np.int16)
        events = run_until(bridge, has_state(ev.BridgeState.READY))
        for _ in range(25):
            assert bridge.push_audio(frame, 16000)
        events += run_until(bridge, lambda es: sum(len(e.pcm) for e in es if isinstance(e, ev.AudioOut)) >= 4 * 14000)
        audio = [e for e in events if isinstance(e, ev.AudioOut)]
        assert all(a.sample_rate == 48000 and a.sample_format is ev.SampleFormat.FLOAT32 for a in audio)
        # The loopback echoes 16 kHz as if it were 24 kHz; the worker resamples to the host's 48 kHz.
        assert abs(sum(len(a.samples()) for a in audio) - 25 * 320 * 2) < 2000
        assert bridge.stats().frames_in == 25
        assert bridge.stats().latency_us["p50"] > 0
    states = [e.state for e in events + bridge.poll() if isinstance(e, ev.StateChanged)]
    assert states[0] is ev.BridgeState.STARTING and states[-1] is ev.BridgeState.CLOSED


def test_audio_pushed_before_the_stream_is_ready_is_kept_in_order() -> None:
    with loopback() as bridge:
        for i in range(10):  # straight after start(), long before the worker is up
            assert bridge.push_audio(np.full(160, i + 1, np.int16), 16000)
        events = run_until(bridge, lambda es: sum(len(e.pcm) for e in es if isinstance(e, ev.AudioOut)) >= 4 * 1400)
        pcm = np.concatenate([e.samples() for e in events if isinstance(e, ev.AudioOut)])
        levels = np.round(pcm * 32768).astype(int)
        assert [int(v) for v in dict.fromkeys(levels.tolist())][:10] == list(range(1, 11))


def test_text_comes_back_as_a_transcript_and_enters_the_history() -> None:
    with loopback() as bridge:
        bridge.send_text("hello there")
        events = run_until(bridge, lambda es: any(isinstance(e, ev.Transcript) for e in es))
        (t,) = [e for e in events if isinstance(e, ev.Transcript)]
        assert t.text == "hello there" and t.role is ev.Role.ASSISTANT and t.stage is ev.Stage.FINAL
        assert bridge.history[-1].text == "hello there"


@pytest.mark.parametrize(
    ("samples", "rate", "error", "match"),
    [
        (np.zeros(320, np.float64), 16000, TypeError, "int16 or float32"),
        (np.zeros((2, 320), np.int16), 16000, ValueError, "mono"),
        (np.array([0.0, np.nan], np.float32), 16000, ValueError, "NaN"),
        (np.array([0.0, np.inf], np.float32), 16000, ValueError, "NaN or infinite"),
        (np.zeros(0, np.int16), 16000, ValueError, "empty"),
        (np.zeros(16000 * 11, np.int16), 16000, ValueError, "longer than 10 s"),
        (np.zeros(320, np.int16), 12345, ValueError, "sample_rate must be one of"),
        (b"\0\0\0", 16000, ValueError, "even length"),
        ([0, 1, 2], 16000, TypeError, "numpy array or PCM16 bytes"),
    ],
)
def test_bad_audio_is_refused_clearly_and_nothing_is_queued(
    samples: object, rate: int, error: type, match: str
) -> None:
    with loopback() as bridge:
        with pytest.raises(error, match=match):
            bridge.push_audio(samples, rate)
        assert bridge.stats().frames_in == 0
        assert bridge.push_audio(np.zeros((1, 320), np.float32), 16000)  # still usable
        assert bridge.push_audio(np.zeros((320, 1), np.int16), 16000)
        assert bridge.push_audio(b"\0\0" * 160, 16000)
        assert bridge.stats().frames_in == 3


def test_other_bad_calls_are_refused_clearly() -> None:
    bridge = loopback()
    with pytest.raises(RuntimeError, match="before start"):
        bridge.push_audio(np.zeros(160, np.int16), 16000)
    with bridge:
        with pytest.raises(ValueError, match="no tool call 'nope'"):
            bridge.send_tool_result("nope", "{}")
        with pytest.raises(ValueError, match="non-empty"):
            bridge.send_text("")
    # A closed bridge is quiet: calls that keep coming (another thread, a late chunk) are refused and counted.
    assert bridge.closed
    assert bridge.push_audio(np.zeros(160, np.int16), 16000) is False
    assert bridge.send_text("x") is False
    assert bridge.stats().dropped_after_close == 2
    last = bridge.poll()  # what happened before the close is still delivered, once
    assert last[-1] == ev.StateChanged(ev.BridgeState.CLOSED)
    assert bridge.poll() == []
    with pytest.raises(BridgeClosed, match="closed"):
        bridge.wait(5.0)  # a loop built on wait() ends instead of spinning
    nova1 = SonicBridge(BridgeConfig(backend="loopback", session=SessionSettings(model_id="amazon.nova-sonic-v1:0")))
    with nova1, pytest.raises(ValueError, match="does not respond to text"):
        nova1.send_text("hi")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"backend": "nope"}, "backend must be one of"),
        ({"region": "moon-1"}, "does not look like an AWS region"),
        ({"endpoint": "http://x"}, "https://"),
        ({"worker_python": "/no/such/python"}, "not an executable"),
        ({"output_sample_rate": 12345}, "output_sample_rate"),
        ({"inbound_capacity": 10}, "inbound_capacity"),
        ({"max_restarts": -1}, "max_restarts"),
    ],
)
def test_configuration_errors_name_the_field(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BridgeConfig(**kw)  # type: ignore[arg-type]


def test_configuration_round_trips_as_json() -> None:
    config = BridgeConfig(backend="loopback", region="eu-north-1", max_restarts=5)
    assert BridgeConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown configuration keys"):
        BridgeConfig.from_json({**config.to_json(), "colour": "red"})


def test_host_never_blocks_while_the_worker_is_stopped_and_then_killed() -> None:
    bridge = loopback(max_restarts=0, stall_timeout=0.5)
    bridge.start()
    run_until(bridge, has_state(ev.BridgeState.READY))
    pid = bridge.worker_pid
    assert pid is not None
    frame = np.zeros(320, np.int16)
    worst = 0.0
    events: list[ev.Event] = []
    stopped_at = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    killed_at = None
    try:
        while time.monotonic() - stopped_at < 4.0:
            t0 = time.perf_counter()
            bridge.push_audio(frame, 16000)
            events += bridge.poll()
            bridge.stats()
            worst = max(worst, time.perf_counter() - t0)
            if killed_at is None and time.monotonic() - stopped_at > 2.0:
                os.kill(pid, signal.SIGKILL)
                killed_at = time.monotonic()
            if any(isinstance(e, ev.Error) and e.code == "worker_died" for e in events):
                break
            time.sleep(0.02)
    finally:
        bridge.close()
    assert worst < 0.005, f"a host call took {worst * 1000:.2f} ms"
    assert any(isinstance(e, ev.Error) and e.code == "worker_stalled" for e in events)
    died = [e for e in events if isinstance(e, ev.Error) and e.code == "worker_died"]
    assert died and not died[0].recoverable and "signal 9" in died[0].message
    assert killed_at is not None and time.monotonic() - killed_at < 1.5


def test_a_killed_worker_is_restarted_and_the_conversation_goes_on() -> None:
    with loopback(max_restarts=1) as bridge:
        bridge.send_text("remember me")
        run_until(bridge, lambda es: any(isinstance(e, ev.Transcript) for e in es))
        first = bridge.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        events = run_until(
            bridge, lambda es: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY for e in es)
        )
        (err,) = [e for e in events if isinstance(e, ev.Error)]
        assert err.code == "worker_died" and err.recoverable
        assert bridge.worker_pid not in (None, first)
        assert [m.text for m in bridge.history] == ["remember me"]
        bridge.push_audio(np.zeros(320, np.int16), 16000)
        run_until(bridge, lambda es: any(isinstance(e, ev.AudioOut) for e in es))
        os.kill(bridge.worker_pid or 0, signal.SIGKILL)  # past the cap: the bridge closes itself
        events = run_until(bridge, has_state(ev.BridgeState.CLOSED))
        assert any(isinstance(e, ev.Error) and e.code == "restart_limit" and not e.recoverable for e in events)


def test_worker_exits_by_itself_when_the_host_dies() -> None:
    import subprocess
    import sys

    script = (
        "import time,sys; from sonic_bridge import SonicBridge, BridgeConfig;"
        "b=SonicBridge(BridgeConfig(backend='loopback')).start(); time.sleep(1.0);"
        "print(b.worker_pid, flush=True); time.sleep(60)"
    )
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        worker_pid = int(host.stdout.readline())
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            if not process_alive(worker_pid):
                break
            time.sleep(0.02)
        gone_after = time.monotonic() - t0
        assert gone_after < 1.0, f"worker outlived its host by {gone_after:.2f} s"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        if host.stdout:
            host.stdout.close()



def test_worker_logs_reach_the_host_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="sonic_bridge")
    with loopback() as bridge:
        bridge.push_audio(b"\0\0\0\0" * 4000 * 3, 16000)  # nothing special: check the channel instead
        run_until(bridge, has_state(ev.BridgeState.READY))
    # Worker records are re-emitted under sonic_bridge.worker.*; a bad frame is logged by the worker.
    bridge2 = loopback()
    with bridge2:
        assert bridge2._inbound is not None and bridge2._in_bell is not None
        bridge2._inbound.try_write(b"\xfe garbage")
        bridge2._in_bell.ring()
        run_until(bridge2, lambda es: any(r.name.startswith("sonic_bridge.worker") for r in caplog.records))
    assert any("unreadable host command" in r.getMessage() for r in caplog.records)


def test_a_full_inbound_ring_drops_counts_and_warns_once() -> None:
    bridge = loopback(inbound_capacity=64 * 1024, stall_timeout=30.0)
    with bridge:
        run_until(bridge, has_state(ev.BridgeState.READY))
        assert bridge.worker_pid is not None
        os.kill(bridge.worker_pid, signal.SIGSTOP)  # the worker stops reading
        try:
            frame = np.zeros(3200, np.int16)
            results = [bridge.push_audio(frame, 16000) for _ in range(30)]
            accepted, dropped = results.count(True), results.count(False)
            assert accepted > 0 and dropped > 0 and results[accepted:] == [False] * dropped
            warnings = [e for e in bridge.poll() if isinstance(e, ev.Warning)]
            assert [(w.code, w.count) for w in warnings] == [("host_ring_full", dropped)]
            assert not [e for e in bridge.poll() if isinstance(e, ev.Warning)]  # reported once
            assert bridge.stats().frames_dropped_in == dropped and bridge.stats().frames_in == accepted
        finally:
            os.kill(bridge.worker_pid, signal.SIGCONT)


def test_poll_drops_queued_audio_of_an_interrupted_response(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from sonic_bridge import FakeOptions
    from tests.fake_driver import silence16, tone16

    scenario = Path(str(tmp_path)) / "scenario.json"
    scenario.write_text(json.dumps({"seed": 2, "time_scale": 0.5, "thinking_ms": [100, 100], "speed": 1.0}))
    config = BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH"),
                          fake=FakeOptions(scenario=str(scenario)))
    with SonicBridge(config) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY))
        # The fake detects turns in audio time, so the host may push faster than real time here.
        bridge.push_audio(tone16(4.0) + silence16(0.8), 16000)
        time.sleep(0.6)  # the reply (4 s of audio, 2x real time here) is streaming into the ring, unpolled
        bridge.push_audio(tone16(0.3, freq=600), 16000)  # the user cuts in
        time.sleep(0.5)  # the worker hears it and queues the interruption behind the stale audio; no poll yet
        events = run_until(bridge, lambda es: any(isinstance(e, ev.Interrupted) for e in es))
        (interrupted,) = [e for e in events if isinstance(e, ev.Interrupted)]
        heard = sum(e.duration for e in events
                    if isinstance(e, ev.AudioOut) and e.response_id == interrupted.response_id)
        assert heard == 0.0  # everything queued for the cut response was dropped, none handed to the host
        assert bridge.stats().audio_dropped_interrupted > 0


def test_no_shared_memory_is_left_in_dev_shm() -> None:
    before = set(os.listdir("/dev/shm"))
    with loopback() as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY))
        os.kill(bridge.worker_pid or 0, signal.SIGKILL)
        run_until(bridge, lambda es: any(isinstance(e, ev.Error) for e in es))
    assert set(os.listdir("/dev/shm")) == before  # the rings are memfds: nothing named to leak
