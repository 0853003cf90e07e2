"""A fault-injection soak: a host that stops polling, a frozen worker, killed workers past the restart cap, a
killed host. Every loss reaches the host as an event, and nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge
from sonic_bridge import events as ev
from sonic_bridge.cli.demo import synth_utterance
from tests.helpers import end_process, process_alive

pytestmark = pytest.mark.slow
CYCLE = 0.02


def leftovers() -> set[str]:
    """Shared memory and temporary files a bridge could leave (memfd rings leave none by design)."""
    shm = {f"/dev/shm/{n}" for n in os.listdir("/dev/shm")} if os.path.isdir("/dev/shm") else set()
    tmp = tempfile.gettempdir()
    return shm | {os.path.join(tmp, n) for n in os.listdir(tmp) if "sonic" in n}


def speak(bridge: SonicBridge, seconds: float, seed: int, *, poll: bool = True, quiet: float = 2.5) -> list[ev.Event]:
    """One utterance then silence, in real-time 20 ms cycles; with poll=False the host is away meanwhile."""
    audio = np.concatenate([synth_utterance(seconds, 16000, seed=seed), np.zeros(int(quiet * 16000), np.float32)])
    events: list[ev.Event] = []
    start = time.monotonic()
    for n, i in enumerate(range(0, len(audio), 320)):
        bridge.push_audio(audio[i : i + 320], 16000)
        if poll:
            events += bridge.poll()
        time.sleep(max(0.0, start + (n + 1) * CYCLE - time.monotonic()))
    return events


def until(bridge: SonicBridge, done: object, timeout: float = 20.0, seen: list[ev.Event] | None = None
          ) -> list[ev.Event]:
    """Poll (feeding silence) until ``done(events)``; ``seen``: events already polled that count too."""
    events: list[ev.Event] = list(seen or [])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += bridge.poll()
        if callable(done) and done(events):
            return events
        bridge.push_audio(np.zeros(320, np.float32), 16000)
        time.sleep(CYCLE)
    raise AssertionError(f"timed out; got {[type(e).__name__ for e in events][-20:]}")


def errors_of(events: list[ev.Event]) -> list[str]:
    return [e.code for e in events if isinstance(e, ev.Error)]


def test_faults_are_all_reported_and_nothing_is_left_behind() -> None:
    before = leftovers()
    config = BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH"), max_restarts=2,
                          outbound_capacity=64 * 1024, fake=FakeOptions(seed=5))
    bridge = SonicBridge(config).start()
    try:
        until(bridge, lambda es: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY for e in es))

        # 1. The host stops polling through a whole reply: 1.2 s of 24 kHz float32 audio cannot fit 64 KiB.
        events = until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es),
                       seen=speak(bridge, 1.2, seed=1, poll=False, quiet=4.0))
        heard = sum(e.duration for e in events if isinstance(e, ev.AudioOut))
        lost = [e for e in events if isinstance(e, ev.Warning) and e.code == "worker_ring_full"]
        assert heard < 1.1 and lost and lost[0].count > 0, "dropped reply audio must be reported"
        assert any(isinstance(e, ev.Transcript) and "turn 1" in e.text for e in events)  # control events kept

        # 2. The worker freezes (SIGSTOP) for longer than the stall timeout, then goes on.
        pid = bridge.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        frozen = until(bridge, lambda es: "worker_stalled" in errors_of(es), timeout=10)
        os.kill(pid, signal.SIGCONT)
        events = until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es),
                       seen=frozen + speak(bridge, 0.8, seed=2))
        assert bridge.worker_pid == pid and "worker_stalled" in errors_of(events)

        # 3. Killed: reported, restarted, the conversation goes on with its history.
        os.kill(pid, signal.SIGKILL)
        events = until(bridge, lambda es: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY
                                              for e in es))
        assert errors_of(events) == ["worker_died"]
        events = until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es), seen=speak(bridge, 0.6, seed=3))
        assert any(isinstance(e, ev.Transcript) and e.role is ev.Role.USER for e in events)

        # 4. Killed again and again, past max_restarts: the bridge closes itself and says why.
        seen: list[str] = []
        for _ in range(2):
            victim = bridge.worker_pid
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            events = until(bridge, lambda es: bool(errors_of(es)))
            seen += errors_of(events)
            if bridge.closed:
                break
            until(bridge, lambda es: any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY
                                         for e in es))
        assert seen == ["worker_died", "restart_limit"]
        assert bridge.closed and bridge.close_reason is not None and bridge.close_reason.code == "restart_limit"
        assert bridge.push_audio(np.zeros(320, np.float32), 16000) is False
    finally:
        bridge.close()
    assert leftovers() <= before


def test_a_killed_host_takes_its_workers_and_their_resources_with_it() -> None:
    before = leftovers()
    script = (
        "import sys, time, numpy as np\n"
        "from sonic_bridge import SonicBridge, BridgeConfig\n"
        "bridges = [SonicBridge(BridgeConfig()).start() for _ in range(3)]\n"
        "deadline = time.monotonic() + 20\n"
        "while time.monotonic() < deadline and not all(b.state.value == 'ready' for b in bridges):\n"
        "    for b in bridges: b.push_audio(np.zeros(320, np.float32), 16000); b.poll()\n"
        "    time.sleep(0.02)\n"
        "print(*[b.worker_pid for b in bridges], flush=True)\n"
        "while True:\n"
        "    for b in bridges: b.push_audio(np.zeros(320, np.float32), 16000); b.poll()\n"
        "    time.sleep(0.02)\n"
    )
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        workers = [int(p) for p in host.stdout.readline().split()]
        assert len(workers) == 3
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(process_alive(p) for p in workers):
            time.sleep(0.05)
        assert not [p for p in workers if process_alive(p)], "a worker outlived its host"
    finally:
        end_process(host)
    assert leftovers() <= before

