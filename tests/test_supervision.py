"""A supervised worker: its RSS and CPU in stats(), and memory and CPU limits; a worker over its limit is
restarted with the conversation replayed and the turn it left unanswered asked again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, errors
from sonic_bridge import events as ev
from sonic_bridge.host.supervise import MiB, Supervisor, Usage, read_usage
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until


def _said(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT
            and e.stage is ev.Stage.FINAL]


def _answered(events: list[ev.Event]) -> bool:
    return any(isinstance(e, ev.TurnEnded) and e.stop_reason == "END_TURN" for e in events)


def test_a_worker_over_its_memory_limit_is_restarted_and_the_unanswered_turn_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"seed": 1, "reply_names_context": True, "thinking_ms": [200, 300],
                                    "turns": [{}, {"allocate_mb": 300}]}))  # turn 2: the worker goes bad
    config = BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH"), max_worker_memory_mb=200,
                          fake=FakeOptions(via_sdk=True, scenario=str(scenario)))
    with SonicBridge(config) as bridge:
        feed = lambda _: bridge.push_audio(silence16(0.02), 16000)  # noqa: E731 - a host's silent mic
        run_until(bridge, has_state(ev.BridgeState.READY), timeout=60)
        bridge.push_audio(tone16(0.8) + silence16(1.8), 16000)
        run_until(bridge, _answered, timeout=20, each_cycle=feed)
        first_pid, s = bridge.worker_pid, bridge.stats()
        assert 20 * MiB < s.worker_rss_bytes < 200 * MiB and s.worker_cpu_seconds > 0, s

        bridge.push_audio(tone16(0.6, freq=500) + silence16(1.8), 16000)
        events = run_until(bridge, lambda es: _answered(es) and any(isinstance(e, ev.Error) and e.code ==
                                                                   errors.WORKER_OVER_LIMIT for e in es),
                           timeout=60, each_cycle=feed)
        s = bridge.stats()
    # A 300 MiB allocation on a loaded machine may also hold the worker's loop past its stall timeout.
    found = [e for e in events if isinstance(e, ev.Error)]
    assert all(e.recoverable and e.code in (errors.WORKER_OVER_LIMIT, errors.WORKER_STALLED) for e in found), found
    (error,) = [e for e in found if e.code == errors.WORKER_OVER_LIMIT]
    assert "over its limit max_worker_memory_mb=200" in error.message and "restarting (1 of 2)" in error.message
    assert s.restarts == 1 and s.worker_pid != first_pid
    # The new worker heard the conversation and answered the turn its predecessor left hanging.
    (reply,) = [t for t in _said(events) if "[voice" in t]
    assert reply.startswith('You wrote "turn 2: 0.6 seconds of speech"'), reply
    assert "last user 'turn 1: 0.8 seconds of speech'" in reply and "2 history messages" in reply


class FakeProc:
    """A worker's /proc as the supervisor reads it."""

    def __init__(self) -> None:
        self.rss = 80 * MiB
        self.cpu = 0.0
        self.reads = 0

    def read(self, pid: int) -> Usage | None:
        self.reads += 1
        return Usage(self.rss, self.cpu)


def test_memory_is_read_at_most_once_a_second_and_its_limit_named() -> None:
    proc = FakeProc()
    sup = Supervisor(42, memory_mb=100, cpu=None, cpu_window=30, read=proc.read)
    assert sup.check(0.0) is None and sup.rss_bytes == 80 * MiB
    proc.rss = 150 * MiB
    assert [sup.check(t / 100) for t in range(1, 100)] == [None] * 99 and proc.reads == 1  # within the second
    why = sup.check(1.0)
    assert why == "the worker (pid 42) uses 150 MiB of memory, over its limit max_worker_memory_mb=100"


def test_cpu_is_judged_over_its_window_and_start_up_is_forgiven() -> None:
    proc = FakeProc()
    sup = Supervisor(7, memory_mb=None, cpu=0.5, cpu_window=5, read=proc.read)
    proc.cpu = 3.0  # imports at start-up: a burst
    sup.check(0.0)
    sup.restart_cpu_window()  # serving from now on
    for t in range(1, 12):
        proc.cpu += 0.3  # 0.3 cores: under the limit
        assert sup.check(float(t)) is None
    assert sup.cpu_percent == pytest.approx(30.0)
    for t in range(12, 16):
        proc.cpu += 1.0  # a spinning stream: a whole core
        why = sup.check(float(t))
    assert why is not None and "over its limit max_worker_cpu=0.5 (worker_cpu_window=5 s)" in why, why


def test_limits_are_checked_and_usage_is_read_from_proc() -> None:
    with pytest.raises(ValueError, match="max_worker_memory_mb must be a whole number from 64"):
        BridgeConfig(max_worker_memory_mb=10)
    with pytest.raises(ValueError, match=r"max_worker_cpu must be a number from 0\.05 to 1024 cores"):
        BridgeConfig(max_worker_cpu=0.0)
    usage = read_usage(os.getpid())
    assert usage is not None and usage.rss_bytes > MiB and usage.cpu_seconds > 0
    assert read_usage(2**22 + 12345) is None  # no such process
