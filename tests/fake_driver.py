"""Drives the fake Sonic model with a virtual clock through a real SonicSession (no I/O, no waiting)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.protocol import SonicSession
from sonic_bridge.fake.model import FakeSonic, Output
from sonic_bridge.fake.scenario import Scenario
from sonic_bridge.settings import SessionSettings


def tone16(seconds: float, freq: float = 300.0, amp: float = 0.4, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()


def silence16(seconds: float, rate: int = 16000) -> bytes:
    return b"\0\0" * int(seconds * rate)


class Run:
    def __init__(self, settings: SessionSettings | None = None, scenario: Scenario | None = None) -> None:
        self.settings = settings or SessionSettings(turn_sensitivity="HIGH")
        counter = iter(range(1, 1_000_000))
        self.session = SonicSession(self.settings, new_id=lambda: f"id-{next(counter)}")
        self.now = 0.0
        self.model = FakeSonic(self.settings.model_id, scenario or Scenario(seed=1), now=0.0)
        self.raw: list[Output] = []
        self.events: list[ev.Event] = []

    def send(self, batch: list[dict[str, Any]]) -> None:
        for event in batch:
            self.model.feed(json.loads(json.dumps(event)), self.now)
        self.pump()

    def pump(self) -> None:
        for item in self.model.pump(self.now):
            self.raw.append(item)
            if isinstance(item, dict):
                self.events += self.session.receive(json.dumps(item))

    def advance(self, seconds: float, step: float = 0.02) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            self.pump()

    def stream_audio(self, pcm: bytes, chunk_seconds: float = 0.02) -> None:
        """Real-time audio: each chunk is sent, then the clock moves by its duration."""
        step = int(chunk_seconds * 16000) * 2
        for i in range(0, len(pcm), step):
            self.send(self.session.audio(pcm[i : i + step]))
            self.advance(chunk_seconds, chunk_seconds)

    def reply_audio(self, response_id: str | None = None) -> np.ndarray:
        parts = [
            e.samples()
            for e in self.events
            if isinstance(e, ev.AudioOut) and (response_id is None or e.response_id == response_id)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def names(self) -> list[str]:
        return [next(iter(o["event"])) if isinstance(o, dict) else str(o) for o in self.raw]


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()
