"""Door 3: the fake Sonic as a backend stream, without the SDK (any Python, the fastest tests)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import random

from sonic_bridge.engines.failures import BackendError, classify
from sonic_bridge.fake.cascade import FakeCascade
from sonic_bridge.fake.converse import FakeConverse
from sonic_bridge.fake.model import DISCONNECT, END, TRUNCATE, FakeError, FakeSonic, Output
from sonic_bridge.fake.scenario import Scenario
from sonic_bridge.host.config import FakeOptions
from sonic_bridge.settings import SessionSettings


def scenario_for(options: FakeOptions) -> Scenario:
    """The scenario file (if any) with the bridge's time scale applied on top and its seed."""
    base = Scenario.load(options.scenario) if options.scenario else Scenario()
    return dataclasses.replace(base, time_scale=base.time_scale * options.time_scale, seed=options.seed or base.seed)


class FakeService:
    """What one fake endpoint shares between its streams: the scenario, the seed, the stream quota."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.open_streams = 0
        self.streams_opened = 0
        self._turns = itertools.count(1)
        self.converse = FakeConverse(scenario)  # the look tool's vision model, at the same endpoint
        self.cascade = FakeCascade(scenario)  # Transcribe, ConverseStream and Polly for the cascade engine

    def new_stream(self, model_id: str, now: float) -> FakeSonic:
        if self.open_streams >= self.scenario.max_streams:
            raise FakeError("ThrottlingException", "Too many concurrent requests, please wait before trying again.")
        self.open_streams += 1
        self.streams_opened += 1
        return FakeSonic(model_id, self.scenario, now=now, rng=random.Random(self.rng.getrandbits(64)),
                         next_turn=lambda: next(self._turns))

    def release(self) -> None:
        self.open_streams = max(0, self.open_streams - 1)


def render_error(item: Output) -> BackendError | None:
    """How an output marker surfaces to a client that has no SDK (the SDK doors raise the real classes)."""
    if isinstance(item, FakeError):
        return classify(item.kind, item.message)
    if item == TRUNCATE:
        return classify("InvalidEventBytes", "Invalid event bytes.")
    if item == DISCONNECT:
        return classify("ConnectionReset", "the connection was reset")
    return None


class FakeDirectStream:
    def __init__(self, service: FakeService, model: FakeSonic) -> None:
        self._service = service
        self.model = model
        self._loop = asyncio.get_running_loop()
        self._ready: collections.deque[Output] = collections.deque()
        self._kick = asyncio.Event()
        self._released = False

    async def send(self, event: str) -> None:
        # As through the SDK: input after the service refused an event is taken (and ignored by the failed
        # model) until the response stream has ended; the service's own error reaches the reader. Failing
        # here at once made a fatal error look like a recoverable connection reset.
        if self._released or self.model.ended:
            raise OSError("Attempted to write to closed stream.")
        self.model.feed(json.loads(event), self._loop.time())
        self._kick.set()

    async def receive(self) -> str | None:
        while True:
            self._ready.extend(self.model.pump(self._loop.time()))
            if self._ready:
                item = self._ready.popleft()
                if isinstance(item, dict):
                    return json.dumps(item)
                if item == END:
                    self._release()
                    return None
                error = render_error(item)
                if error is not None:
                    self._release()
                    raise error
                continue
            due = self.model.next_due()
            timeout = None if due is None else max(0.0, due - self._loop.time())
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)

    async def end_input(self) -> None:
        self.model.end_input(self._loop.time())
        self._kick.set()

    async def aclose(self) -> None:
        self._release()
        self._kick.set()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._service.release()


class FakeDirectBackend:
    def __init__(self, options: FakeOptions) -> None:
        self.service = FakeService(scenario_for(options))

    async def open(self, settings: SessionSettings) -> FakeDirectStream:
        loop = asyncio.get_running_loop()
        try:
            model = self.service.new_stream(settings.model_id, loop.time())
        except FakeError as err:
            raise classify(err.kind, err.message) from None
        return FakeDirectStream(self.service, model)

    async def converse(self, model_id: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The fake Converse without the SDK (the look tool on the direct door)."""
        reply = self.service.converse.handle(model_id, body)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return reply.status, dict(reply.headers), reply.body

    async def aclose(self) -> None:
        return None
