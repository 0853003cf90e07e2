"""The worker's shared clock: ticks on a per-process phase, beats every session; a failing job fails only its own."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sonic_bridge.worker.clock import AUDIO_TICK_SECONDS, HEARTBEAT_SECONDS, Clock, next_tick, phase_for

T = AUDIO_TICK_SECONDS


@given(st.floats(0, 1e7), st.floats(0, T, exclude_max=True))
def test_the_next_tick_is_the_first_one_after_now_on_the_phase(now: float, phase: float) -> None:
    at = next_tick(now, phase)
    assert now < at <= now + T + 1e-6
    assert abs(((at - phase) / T) - round((at - phase) / T)) < 1e-6  # on the phase


@pytest.mark.parametrize("first", [1, 977, 31337, 4_000_000])
def test_processes_started_one_after_another_tick_apart(first: int) -> None:
    # However many workers a host starts in a row (consecutive pids), no two tick within T/20 of each other.
    for count in (2, 4, 8, 16):
        phases = sorted(phase_for(pid) for pid in range(first, first + count))
        gaps = [b - a for a, b in itertools.pairwise(phases)] + [phases[0] + T - phases[-1]]
        assert min(gaps) > T / (2.7 * count), (count, gaps)


def test_every_session_is_woken_and_beaten_and_a_failing_one_fails_alone() -> None:
    async def scenario() -> tuple[int, int, int, BaseException | None]:
        loop = asyncio.get_running_loop()
        clock = Clock(loop, phase=0.0)
        beats = {"good": 0, "bad": 0}

        def bad_beat() -> None:
            beats["bad"] += 1
            raise RuntimeError("ring gone")

        good = clock.join(lambda: beats.__setitem__("good", beats["good"] + 1))
        bad = clock.join(bad_beat)
        good.ticking = True
        wakes = 0
        deadline = loop.time() + 6 * HEARTBEAT_SECONDS
        while loop.time() < deadline:
            good.wake.clear()
            await asyncio.wait_for(good.wake.wait(), 2 * T)  # a tick comes within one period
            wakes += 1
        error = bad.failed.exception() if bad.failed.done() else None
        clock.leave(good)
        return wakes, beats["good"], beats["bad"], error

    wakes, good, bad, error = asyncio.run(scenario())
    assert wakes >= 6 * HEARTBEAT_SECONDS / T * 0.5
    assert good >= 3 and bad == 1  # the failing session left the clock; the other kept its heartbeat
    assert isinstance(error, RuntimeError) and "ring gone" in str(error)
