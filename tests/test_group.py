"""Shared workers: several sessions per worker process, each still its own conversation with its own accounting."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, WorkerGroup, WorkerPool, errors
from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.backends.loopback import FAIL_PREFIX
from sonic_bridge.ipc import control
from tests.helpers import has_state, process_alive, run_until

FAST = SessionSettings(turn_sensitivity="HIGH")


def speak_one_turn(*bridges: SonicBridge, seconds: float = 1.0) -> list[list[ev.Event]]:
    """One spoken turn (a tone, then silence) in every bridge at once, as one host cycle drives them all, until
    each one's answer has ended; returns each bridge's events. Every frame pushed must be taken."""
    speech = (0.4 * np.sin(2 * np.pi * 300 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
    audio = np.concatenate([speech, np.zeros(40000, np.float32)])
    events: list[list[ev.Event]] = [[] for _ in bridges]
    deadline = time.monotonic() + 30
    i = 0
    while not all(any(isinstance(e, ev.TurnEnded) for e in got) for got in events):
        assert time.monotonic() < deadline, "not every session's turn ended"
        frame = audio[i : i + 320] if i < len(audio) else np.zeros(320, np.float32)
        i += 320
        for bridge, got in zip(bridges, events, strict=True):
            assert bridge.push_audio(frame, 16000)
            got.extend(bridge.poll())
        time.sleep(0.02)
    return events


def transcripts(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.Transcript) and e.stage is ev.Stage.FINAL]


def ready(bridge: SonicBridge, timeout: float = 30.0) -> list[ev.Event]:
    return run_until(bridge, has_state(ev.BridgeState.READY), timeout)


def test_sessions_share_processes_k_at_a_time_and_every_frame_reaches_the_service() -> None:
    config = BridgeConfig(session=FAST)
    with WorkerGroup(config, sessions_per_worker=2) as group:
        bridges = [SonicBridge(config, group=group).start() for _ in range(3)]
        try:
            for bridge in bridges:
                ready(bridge)
            pids = [b.worker_pid for b in bridges]
            assert pids[0] == pids[1] != pids[2], pids  # two sessions in the first process, one in the next
            assert group.sessions == 3
            for got in speak_one_turn(*bridges):
                assert "turn 1: 1.0 seconds of speech" in transcripts(got)
            for bridge in bridges:
                bridge.close()
                stats = bridge.stats()
                # Every frame pushed reached the fake service (or would be a counted drop: there are none).
                assert stats.frames_in == stats.worker_frames_sent > 0 and stats.worker_frames_dropped == 0
            assert group.sessions == 0
            assert all(process_alive(pid) for pid in set(pids))  # closing a session leaves its process serving
            # A new session joins a process that is already there: no interpreter start.
            with SonicBridge(config, group=group) as again:
                ready(again)
                assert again.worker_pid in pids
        finally:
            for bridge in bridges:
                bridge.close()
    assert not any(process_alive(pid) for pid in set(pids))  # the group ended its processes by their pids


@pytest.mark.sdk
def test_sessions_in_one_process_converse_through_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    config = BridgeConfig(session=FAST, fake=FakeOptions(via_sdk=True))
    with WorkerGroup(config, sessions_per_worker=4) as group:
        bridges = [SonicBridge(config, group=group).start() for _ in range(2)]
        try:
            for bridge in bridges:
                ready(bridge, 60)
            assert bridges[0].worker_pid == bridges[1].worker_pid
            for got in speak_one_turn(*bridges):  # the two turns overlap: both sessions speak in the same cycles
                assert "turn 1: 1.0 seconds of speech" in transcripts(got)
        finally:
            for bridge in bridges:
                bridge.close()
        for bridge in bridges:
            stats = bridge.stats()
            assert stats.frames_in == stats.worker_frames_sent and stats.worker_frames_dropped == 0


def test_a_crashed_process_costs_only_its_sessions_and_they_restart_with_their_history(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"reply_names_context": True}))  # the fake's replies say what history it has
    config = BridgeConfig(session=FAST, fake=FakeOptions(scenario=str(scenario)))
    with WorkerGroup(config, sessions_per_worker=2) as group:
        a, b, c = (SonicBridge(config, group=group).start() for _ in range(3))
        try:
            for bridge in (a, b, c):
                ready(bridge)
            speak_one_turn(a, b)
            shared, other = a.worker_pid, c.worker_pid
            assert shared == b.worker_pid and shared is not None and other is not None and other != shared
            os.kill(shared, signal.SIGKILL)
            for bridge in (a, b):
                events = run_until(bridge, has_state(ev.BridgeState.READY), 30)
                died = [e for e in events if isinstance(e, ev.Error) and e.code == errors.WORKER_DIED]
                assert died and died[0].recoverable and f"pid {shared}" in died[0].message
                assert bridge.worker_pid not in (None, shared)
            c_before = c.poll()
            after = speak_one_turn(a, b, c)
            for bridge, got in zip((a, b), after, strict=False):
                # The conversation goes on where it was: the first turn is in the restarted session's history.
                (reply,) = [t for t in transcripts(got) if "history messages" in t]
                assert "last user 'turn 1: 1.0 seconds of speech'" in reply and "2 history messages" in reply, reply
                assert bridge.stats().restarts == 1
            # The session in the other process never noticed.
            assert c.worker_pid == other and c.stats().restarts == 0
            assert not [e for e in c_before + after[2] if isinstance(e, ev.Error)]
            assert any("turn 1: 1.0 seconds of speech" in t for t in transcripts(after[2]))
        finally:
            for bridge in (a, b, c):
                bridge.close()


def test_a_session_that_fails_inside_a_shared_process_leaves_its_neighbour_alone() -> None:
    good = BridgeConfig(session=FAST)
    bad = BridgeConfig(backend="loopback", session=SessionSettings(system_prompt=FAIL_PREFIX + "boom"),
                       max_restarts=1)
    with WorkerGroup(good, sessions_per_worker=2) as group:
        neighbour = SonicBridge(good, group=group).start()
        failing = SonicBridge(bad, group=group).start()
        try:
            ready(neighbour)
            events = run_until(failing, lambda es: failing.closed, 30)
            failures = [e for e in events if isinstance(e, ev.Error)]
            assert any("RuntimeError: boom" in e.message for e in failures)
            assert failing.close_reason is not None and failing.close_reason.code == errors.RESTART_LIMIT
            assert failing.stats().restarts == 1
            assert neighbour.worker_pid is not None and process_alive(neighbour.worker_pid)
            assert "turn 1: 1.0 seconds of speech" in transcripts(speak_one_turn(neighbour)[0])
            assert neighbour.stats().restarts == 0
        finally:
            failing.close()
            neighbour.close()


def test_sessions_join_from_many_threads_at_once() -> None:
    config = BridgeConfig(session=FAST)
    with WorkerGroup(config, sessions_per_worker=3) as group:
        bridges = [SonicBridge(config, group=group) for _ in range(6)]
        threads = [threading.Thread(target=b.start) for b in bridges]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            for bridge in bridges:
                ready(bridge)
            per_process: dict[int | None, int] = {}
            for bridge in bridges:
                per_process[bridge.worker_pid] = per_process.get(bridge.worker_pid, 0) + 1
            assert sorted(per_process.values()) == [3, 3], per_process
        finally:
            for bridge in bridges:
                bridge.close()


def test_what_cannot_share_a_process_is_refused_with_the_reason() -> None:
    config = BridgeConfig(session=FAST)
    with pytest.raises(ValueError, match="sessions_per_worker"):
        WorkerGroup(config, sessions_per_worker=0)
    with pytest.raises(ValueError, match="max_worker_memory_mb"):
        WorkerGroup(BridgeConfig(max_worker_memory_mb=512))
    with WorkerGroup(config) as group:
        with pytest.raises(ValueError, match="max_worker_cpu"):
            SonicBridge(BridgeConfig(max_worker_cpu=1.0), group=group)
        with pytest.raises(ValueError, match="worker_env"):
            SonicBridge(BridgeConfig(worker_env={"X_MINE": "1"}), group=group)
        with pytest.raises(TypeError, match="WorkerGroup"):
            SonicBridge(config, group=object())  # type: ignore[arg-type]
        with WorkerPool(BridgeConfig(backend="loopback"), size=1) as pool, pytest.raises(ValueError, match="not both"):
            SonicBridge(config, pool=pool, group=group)
    # A closed group: the bridge says why and stays quiet and cheap.
    bridge = SonicBridge(config, group=group).start()
    events = bridge.poll()
    assert bridge.closed and any(isinstance(e, ev.Error) and "closed" in e.message for e in events)
    assert bridge.push_audio(np.zeros(320, np.float32), 16000) is False
    assert bridge.poll() == []


def test_closing_the_group_closes_its_bridges_sessions_with_a_report() -> None:
    config = BridgeConfig(session=FAST, max_restarts=3)
    group = WorkerGroup(config, sessions_per_worker=2)
    bridge = SonicBridge(config, group=group).start()
    try:
        ready(bridge)
        pid = bridge.worker_pid
        group.close()
        events = run_until(bridge, lambda es: bridge.closed, 15)
        assert pid is not None and not process_alive(pid)
        # It tried to restart in the group, which is closed: a terminal error that says so.
        assert bridge.close_reason is not None and "closed" in bridge.close_reason.message
        assert any(isinstance(e, ev.Error) and e.code == errors.WORKER_DIED for e in events)
    finally:
        bridge.close()
        group.close()


def test_control_messages_round_trip_and_bad_ones_are_named() -> None:
    attach = control.Attach(7, control.SESSION_FDS)
    assert control.parse(control.encode(attach), len(control.SESSION_FDS)) == attach
    assert control.parse(control.encode(control.Detach(7)), 0) == control.Detach(7)
    with pytest.raises(control.ControlError, match="unreadable"):
        control.parse(b"{not json", 0)
    with pytest.raises(control.ControlError, match="missing"):
        control.parse(control.encode(control.Attach(1, ("in-ring",))), 1)
    with pytest.raises(control.ControlError, match="descriptors"):
        control.parse(control.encode(attach), 2)
    with pytest.raises(control.ControlError, match="operation"):
        control.parse(b'{"op": "explode", "session": 1}', 0)
    with pytest.raises(control.ControlError, match="session id"):
        control.parse(b'{"op": "detach", "session": "one"}', 0)
