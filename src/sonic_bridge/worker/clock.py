"""The worker's timers, shared by every session the process serves: one wake-up per tick for all of them.

Two periodic jobs per session: read the audio the host queued (every ``AUDIO_TICK_SECONDS``; the host does
not ring for audio) and beat the heartbeat (every ``HEARTBEAT_SECONDS``, with the audio tally once a
second). A worker that serves eight sessions wakes as often as one that serves one: timer handles on the
loop, not a task and a timeout per session. A job that raises fails its own session only.
"""

from __future__ import annotations

import asyncio
import logging
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


@dataclass(eq=False)
class Member:
    """One session's part in the clock."""

    beat: Callable[[], None]  # the heartbeat (and a retry of its outbox's backlog)
    wake: asyncio.Event  # set on every audio tick: the session's command reader runs
    failed: asyncio.Future[None]  # holds the exception a job of this session raised
    account: Callable[[], None] | None = field(default=None)  # the audio tally, once the engine exists
    ticking: bool = False  # audio ticks only once the session serves (an idle pre-started one sleeps)


class Clock:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._members: list[Member] = []
        self._beats = 0
        self._handles: list[asyncio.TimerHandle] = []

    def join(self, beat: Callable[[], None]) -> Member:
        member = Member(beat, asyncio.Event(), self._loop.create_future())
        self._members.append(member)
        if not self._handles:
            self._handles = [self._loop.call_later(AUDIO_TICK_SECONDS, self._tick),
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
            self._handles[0] = self._loop.call_later(AUDIO_TICK_SECONDS, self._tick)

    def _beat(self) -> None:
        self._beats += 1
        accounting = self._beats % _BEATS_PER_ACCOUNT == 0
        for member in list(self._members):
            self._run(member, member.beat)
            if accounting and member.account is not None and member in self._members:
                self._run(member, member.account)
        if self._handles:
            self._handles[1] = self._loop.call_later(HEARTBEAT_SECONDS, self._beat)
