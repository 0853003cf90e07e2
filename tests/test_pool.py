"""Pre-started workers: a session taken from the pool is ready at once, and the pool looks after itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge
from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.backends.loopback import FAIL_PREFIX
from sonic_bridge.host.pool import WorkerPool
from tests.helpers import end_process, process_alive, run_until


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def seconds_to_ready(bridge: SonicBridge) -> float:
    start = time.monotonic()
    bridge.start()
    run_until(bridge, lambda es: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY
                                     for e in es), timeout=30)
    return time.monotonic() - start


@pytest.mark.sdk
def test_a_session_from_the_pool_is_ready_at_once_and_converses(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    template = BridgeConfig(fake=FakeOptions(via_sdk=True))
    config = BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH"), fake=FakeOptions(via_sdk=True))
    with WorkerPool(template, size=1) as pool:
        wait_for(lambda: pool.idle == 1)
        bridge = SonicBridge(config, pool=pool)
        try:
            took = seconds_to_ready(bridge)
            assert pool.taken == 1 and took < 0.5, f"{took:.3f} s to READY from a pre-started worker"
            speech = (0.4 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)
            audio = np.concatenate([speech, np.zeros(40000, np.float32)])
            frames = iter(range(0, len(audio), 320))

            def speak(_: int) -> None:
                i = next(frames, None)
                bridge.push_audio(audio[i : i + 320] if i is not None else np.zeros(320, np.float32), 16000)

            events = run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es), 20, speak)
            assert "turn 1: 1.0 seconds of speech" in [e.text for e in events if isinstance(e, ev.Transcript)]
            wait_for(lambda: pool.idle == 1)  # the pool made a new one meanwhile
        finally:
            bridge.close()


def test_the_taken_worker_serves_the_sessions_own_configuration() -> None:
    with WorkerPool(BridgeConfig(backend="loopback"), size=1) as pool:
        wait_for(lambda: pool.idle == 1)
        config = BridgeConfig(backend="loopback", session=SessionSettings(system_prompt=FAIL_PREFIX + "mine"),
                              max_restarts=0)
        with SonicBridge(config, pool=pool) as bridge:
            events = run_until(bridge, lambda es: any(isinstance(e, ev.Error) for e in es))
        assert pool.taken == 1
        assert any(isinstance(e, ev.Error) and "RuntimeError: mine" in e.message for e in events)


def test_a_session_whose_setup_differs_starts_cold() -> None:
    with WorkerPool(BridgeConfig(backend="loopback"), size=1) as pool:
        wait_for(lambda: pool.idle == 1)
        other = BridgeConfig(backend="loopback", inbound_capacity=1 << 20)
        assert not pool.fits(other)
        with SonicBridge(other, pool=pool) as bridge:
            bridge.send_text("hello")
            events = run_until(bridge, lambda es: any(isinstance(e, ev.Transcript) for e in es))
        assert pool.taken == 0 and [e.text for e in events if isinstance(e, ev.Transcript)] == ["hello"]


def test_an_idle_worker_that_dies_is_replaced() -> None:
    with WorkerPool(BridgeConfig(backend="loopback"), size=2) as pool:
        wait_for(lambda: pool.idle == 2)
        victim = pool.idle_pids[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: pool.replaced == 1 and pool.idle == 2 and victim not in pool.idle_pids)


def test_a_pool_whose_workers_cannot_start_gives_up_and_bridges_report_why() -> None:
    config = BridgeConfig(backend="loopback", worker_python="/bin/false")
    with WorkerPool(config, size=1) as pool:
        wait_for(lambda: pool.replaced >= 3)
        time.sleep(0.5)
        assert pool.replaced == 3 and pool.idle_pids == []  # it stopped trying
        with SonicBridge(config, pool=pool) as bridge:
            events = run_until(bridge, lambda es: any(isinstance(e, ev.Error) for e in es))
        assert [e.code for e in events if isinstance(e, ev.Error)] == ["worker_start_failed"]


def test_idle_workers_end_with_their_host() -> None:
    script = ("import time\nfrom sonic_bridge import BridgeConfig\nfrom sonic_bridge.host.pool import WorkerPool\n"
              "pool = WorkerPool(BridgeConfig(backend='loopback'), size=3)\n"
              "while pool.idle < 3: time.sleep(0.02)\n"
              "print(*pool.idle_pids, flush=True)\ntime.sleep(60)\n")
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        pids = [int(p) for p in host.stdout.readline().split()]
        assert len(pids) == 3
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        wait_for(lambda: not [p for p in pids if process_alive(p)], timeout=5)
    finally:
        end_process(host)

