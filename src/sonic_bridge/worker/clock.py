"""The worker's timers, shared by every session the process serves: one wake-up per tick for all of them.

Two periodic jobs per session: read the audio the host queued (every ``AUDIO_TICK_SECONDS``; the host does
not ring for audio) and beat the heartbeat (every ``HEARTBEAT_SECONDS``, with the audio tally once a
second). A worker that serves eight sessions wakes as often as one that serves one: timer handles on the
loop, not a task and a timeout per session. A job that raises fails its own session only.

Ticks fall on a fixed phase of the system's monotonic clock, a different one for each worker process
(spread by the golden ratio over the pid, so any number of processes started one after another interleave):
on a 2-core machine two workers' tick bursts that coincide leave no core for the host's own cycle, and its
lateness p99 measured 2-3x worse than with the bursts apart.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("sonic_bridge.worker")
HEARTBEAT_SECONDS = 0.1
ACCOUNT_SECONDS = 1.0
# User audio waits at most this long in the ring (the host does not ring for it); what one tick reads goes to
# the service as one event: at 40 ms, two 20 ms host frames, half the wake-ups, events and writes of 20 ms
# (worker CPU -44 % measured), for at most 20 ms more delay before the service hears them.
AUDIO_TICK_SECONDS = 0.04
_BEATS_PER_ACCOUNT = round(ACCOUNT_SECONDS / HEARTBEAT_SECONDS)
_GOLDEN = (math.sqrt(5) - 1) / 2


def phase_for(pid: int) -> float:
    """This process's tick phase in seconds, within one tick."""
    return (pid * _GOLDEN) % 1.0 * AUDIO_TICK_SECONDS


def next_tick(now: float, phase: float) -> float:
    """The first tick time after ``now`` on this phase (times on the loop's clock, time.monotonic)."""
    return phase + (math.floor((now - phase) / AUDIO_TICK_SECONDS) + 1) * AUDIO_TICK_SECONDS


@dataclass(eq=False)
class Member:
    """One session's part in the clock."""

    beat: Callable[[], None]  # the heartbeat (and a retry of its outbox's backlog)
    wake: asyncio.Event  # set on every audio tick: the session's command reader runs
    failed: asyncio.Future[None]  # holds the exception a job of this session raised
    account: Callable[[], None] | None = field(default=None)  # the audio tally, once the engine exists
    ticking: bool = False  # audio ticks only once the session serves (an idle pre-started one sleeps)


class Clock:
    def __init__(self, loop: asyncio.AbstractEventLoop, phase: float | None = None) -> None:
        self._loop = loop
        self._phase = phase_for(os.getpid()) if phase is None else phase
        self._members: list[Member] = []
        self._beats = 0
        self._next_at = 0.0
        self._handles: list[asyncio.TimerHandle] = []

    def join(self, beat: Callable[[], None]) -> Member:
        member = Member(beat, asyncio.Event(), self._loop.create_future())
        self._members.append(member)
        if not self._handles:
            self._next_at = next_tick(self._loop.time(), self._phase)
            self._handles = [self._loop.call_at(self._next_at, self._tick),
                             self._loop.call_later(HEARTBEAT_SECONDS, self._beat)]
        return member

    def leave(self, member: Member) -> None:
        if member in self._members:
            self._members.remove(member)
        if not member.failed.done():
            member.failed.cancel()
        if not self._members:
            for handle in self._handles:
                handle.cancel()
            self._handles = []

    def _run(self, member: Member, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as exc:  # that session's failure, not the clock's
            if not member.failed.done():
                member.failed.set_exception(exc)
            self.leave(member)

    def _tick(self) -> None:
        for member in self._members:
            if member.ticking:
                member.wake.set()
        if self._handles:
            at = next_tick(self._loop.time(), self._phase)
            if at - self._next_at < AUDIO_TICK_SECONDS / 2:  # run a little early (or rounding): that tick was this
                at += AUDIO_TICK_SECONDS
            self._next_at = at
            self._handles[0] = self._loop.call_at(at, self._tick)

    def _beat(self) -> None:
        self._beats += 1
        accounting = self._beats % _BEATS_PER_ACCOUNT == 0
        for member in list(self._members):
            self._run(member, member.beat)
            if accounting and member.account is not None and member in self._members:
                self._run(member, member.account)
        if self._handles:
            self._handles[1] = self._loop.call_later(HEARTBEAT_SECONDS, self._beat)
