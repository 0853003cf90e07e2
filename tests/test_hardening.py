"""Issue 16's host and worker cases: nothing fails silently, hostile input is refused by name."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, SampleFormat, SessionSettings, SonicBridge
from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.backends.loopback import FAIL_PREFIX
from tests.helpers import run_until


def echo_bridge() -> SonicBridge:
    # The loopback echoes 16 kHz input as 24 kHz output: 24 kHz int16 out means the bytes come back as sent.
    return SonicBridge(BridgeConfig(backend="loopback", output_sample_rate=24000, output_format=SampleFormat.INT16))


def test_a_configuration_that_cannot_reach_the_worker_is_refused_by_start_with_nothing_left_open(
        monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = SonicBridge(BridgeConfig(backend="loopback"))

    def unsendable(self: BridgeConfig) -> str:
        raise TypeError("Object of type set is not JSON serializable")

    monkeypatch.setattr(BridgeConfig, "dumps", unsendable)
    with pytest.raises(ValueError, match="cannot be sent to the worker: Object of type set"):
        bridge.start()
    assert bridge.worker_pid is None  # and the fixture checks that no fd (rings, pipes, memfd) is left


def test_a_crash_inside_the_worker_is_reported_with_its_cause_then_restarted() -> None:
    config = BridgeConfig(backend="loopback", session=SessionSettings(system_prompt=FAIL_PREFIX + "a bug"),
                          max_restarts=1)
    with SonicBridge(config) as bridge:
        events = run_until(bridge, lambda es: any(isinstance(e, ev.Error) and not e.recoverable for e in es), 30)
    errors = [(e.code, e.recoverable) for e in events if isinstance(e, ev.Error)]
    assert errors == [("internal_error", True), ("worker_died", True), ("internal_error", True),
                      ("restart_limit", False)]
    crash = next(e for e in events if isinstance(e, ev.Error))
    assert "session task failed: RuntimeError: a bug" in crash.message


@pytest.mark.skipif(not os.environ.get("SONIC_BRIDGE_HOST_PYTHON"), reason="needs the Python 3.11 host venv")
def test_the_aws_backend_on_a_worker_without_the_sdk_names_the_interpreter_and_the_fix() -> None:
    python = os.environ["SONIC_BRIDGE_HOST_PYTHON"]  # has sonic-bridge, cannot have the SDK (Python 3.11)
    bridge = SonicBridge(BridgeConfig(backend="aws", worker_python=python, endpoint="https://127.0.0.1:9")).start()
    try:
        events = run_until(bridge, lambda es: any(isinstance(e, ev.Error) for e in es), 30)
    finally:
        bridge.close()
    (error,) = [e for e in events if isinstance(e, ev.Error)]
    assert error.code == "worker_environment" and not error.recoverable
    assert "cannot import the AWS SDK" in error.message and "sonic-bridge worker-env" in error.message
    assert "Python 3.11" in error.message


def test_a_memoryview_of_float_audio_is_refused_not_taken_as_pcm16() -> None:
    with echo_bridge() as bridge:
        samples = np.zeros((1, 320), np.float32)
        with pytest.raises(TypeError, match="format 'f'"):
            bridge.push_audio(memoryview(samples), 16000)
        with pytest.raises(TypeError, match="format 'f'"):
            bridge.push_audio(memoryview(samples.reshape(-1)), 16000)
        assert bridge.push_audio(memoryview(np.zeros(320, np.int16).tobytes()), 16000)
        assert bridge.stats().frames_in == 1


def test_big_endian_audio_is_converted_not_refused() -> None:
    values = (np.arange(320) * 50 - 8000).astype(np.int16)
    with echo_bridge() as bridge:
        assert bridge.push_audio(values.astype(">i2"), 16000)
        assert bridge.push_audio(values.astype(np.float32).astype(">f4") / 32768.0, 16000)
        events = run_until(bridge, lambda es: sum(len(e.pcm) for e in es if isinstance(e, ev.AudioOut)) >= 1280, 10)
    echoed = np.frombuffer(b"".join(e.pcm for e in events if isinstance(e, ev.AudioOut)), "<i2")
    assert np.array_equal(echoed[:320], values)
    assert np.abs(echoed[320:640].astype(int) - values).max() <= 1  # float32 -> int16 in the worker


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_a_matrix_cannot_bypass_the_frame_length_limit() -> None:
    with echo_bridge() as bridge:
        long = np.asmatrix(np.zeros((1, 11 * 16000), np.float32))
        with pytest.raises(ValueError, match="longer than 10 s"):
            bridge.push_audio(long, 16000)
        time.sleep(0.05)
        assert bridge.stats().frames_in == 0
