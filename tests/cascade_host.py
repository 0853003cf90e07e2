"""A host for cascade tests: pushes 20 ms frames in real time (silence unless something is to be said), plays
the reply audio it receives at real time, answers tool calls and, once ``camera`` is set, pushes that frame
every cycle as a camera would."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from sonic_bridge import SonicBridge
from sonic_bridge import events as ev

RATE = 16000
FRAME = RATE // 50


class CascadeHost:
    def __init__(self, bridge: SonicBridge, tool_answer: Callable[[ev.ToolCall], Any] | None = None) -> None:
        self.bridge = bridge
        self.events: list[ev.Event] = []
        self._say: collections.deque[np.ndarray] = collections.deque()
        self.frames_pushed = 0
        self.playing_until = 0.0
        self.tool_answer = tool_answer
        self.camera: np.ndarray | None = None

    def say(self, audio: np.ndarray) -> None:
        for i in range(0, len(audio), FRAME):
            frame = audio[i : i + FRAME]
            self._say.append(np.pad(frame, (0, FRAME - len(frame))))

    @property
    def quiet(self) -> bool:
        """Nothing left to say and the reply audio has played."""
        return not self._say and time.monotonic() >= self.playing_until

    def cycle(self) -> None:
        frame = self._say.popleft() if self._say else np.zeros(FRAME, np.float32)
        if self.bridge.push_audio(frame.astype(np.float32), RATE):
            self.frames_pushed += 1
        if self.camera is not None:
            self.bridge.push_video(self.camera)
        for event in self.bridge.poll():
            self.events.append(event)
            if isinstance(event, ev.AudioOut):
                self.playing_until = max(self.playing_until, time.monotonic()) + event.duration
            elif isinstance(event, ev.Interrupted):
                self.playing_until = time.monotonic()
            elif isinstance(event, ev.ToolCall) and self.tool_answer is not None:
                self.bridge.send_tool_result(event.tool_use_id, self.tool_answer(event))

    def run_until(self, done: Callable[[list[ev.Event]], bool], timeout: float = 30.0) -> list[ev.Event]:
        deadline = time.monotonic() + timeout
        next_cycle = time.monotonic()
        while time.monotonic() < deadline:
            self.cycle()
            if done(self.events):
                return self.events
            next_cycle += 0.02
            time.sleep(max(0.0, next_cycle - time.monotonic()))
        raise AssertionError(f"timed out; got {[type(e).__name__ for e in self.events][-40:]}")

    def count(self, kind: type, **match: Any) -> int:
        return sum(isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items()) for e in self.events)

    def user_finals(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, ev.Transcript) and e.role is ev.Role.USER
                and e.stage is ev.Stage.FINAL]

    def assistant_finals(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT
                and e.stage is ev.Stage.FINAL]
