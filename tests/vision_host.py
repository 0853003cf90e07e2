"""A host for the vision tests: a 20 ms cycle that speaks turns, pushes camera frames and records both."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import soxr

from sonic_bridge import SonicBridge
from sonic_bridge import events as ev
from sonic_bridge.fake import speech
from sonic_bridge.vision.sampler import KeepEvery

PALETTE = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "cyan": (0, 255, 255), "magenta": (255, 0, 255), "white": (255, 255, 255), "black": (0, 0, 0)}
NAMES = list(PALETTE)
DROPPED = (128, 128, 128)  # frames the sampler drops are grey: no answer may ever mention them
CYCLE = 0.02


@dataclass
class Kept:
    captured: float
    colour: str


@dataclass
class Host:
    bridge: SonicBridge
    interval: float
    width: int = 160
    height: int = 120
    camera: bool = True
    events: list[ev.Event] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    push_ns: list[int] = field(default_factory=list)
    _speech: list[np.ndarray] = field(default_factory=list)
    _keep: KeepEvery | None = None
    _rng: random.Random = field(default_factory=lambda: random.Random(7))

    def say(self, text: str) -> None:
        """Queue a spoken turn (the fake hears the words), followed by the silence that ends it."""
        audio = np.concatenate([speech.say(text, 16000), np.zeros(16000, np.float32)])
        self._speech += [audio[i : i + 320] for i in range(0, len(audio), 320)]

    def cycle(self) -> None:
        frame = self._speech.pop(0) if self._speech else np.zeros(320, np.float32)
        self.bridge.push_audio(frame, 16000)
        if self.camera:
            self._push_frame(time.monotonic())
        self.events += self.bridge.poll()

    def _push_frame(self, now: float) -> None:
        if self._keep is None:
            self._keep = KeepEvery(self.interval)
        kept = self._keep.keep(now)  # the bridge's own sampler decides the same way
        colour = NAMES[len(self.kept) % len(NAMES)] if kept else None
        frame = np.empty((self.height, self.width, 3), np.uint8)
        frame[:] = PALETTE[colour] if colour else DROPPED
        started = time.perf_counter_ns()
        took = self.bridge.push_video(frame, timestamp=now)
        self.push_ns.append(time.perf_counter_ns() - started)
        assert took == kept
        if colour:
            self.kept.append(Kept(now, colour))

    def run_until(self, done: Callable[[list[ev.Event]], bool], timeout: float = 30.0) -> list[ev.Event]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.cycle()
            if done(self.events):
                return self.events
            self.pause()
        raise AssertionError(f"timed out; got {[type(e).__name__ for e in self.events][-40:]}")

    def looks(self) -> list[ev.Look]:
        return [e for e in self.events if isinstance(e, ev.Look)]

    def replies(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT
                and e.stage is ev.Stage.FINAL]

    def expected_colours(self, look: ev.Look) -> list[str]:
        """The colours of the kept frames a look's ages point at. Ages are exact to the millisecond, and the
        cycle's jitter makes the gaps between kept frames irregular, so one anchor (the newest frame) fits."""
        fits = []
        for anchor in self.kept:
            picked = []
            for age in look.frame_ages:
                when = anchor.captured - (age - look.frame_ages[-1])
                best = min(self.kept, key=lambda k: abs(k.captured - when))
                if abs(best.captured - when) > 0.0025:
                    break
                picked.append(best.colour)
            else:
                fits.append(picked)
        assert len(fits) == 1, f"{len(fits)} sets of kept frames match the look's ages {look.frame_ages}"
        return fits[0]

    def pause(self) -> None:
        time.sleep(CYCLE + self._rng.uniform(0.0, 0.012))


def answered_colours(answer: str) -> list[str]:
    return re.findall(r"image \d+: \d+x\d+, mostly ([a-z ]+?)(?:;|\.)", answer)


def reply_audio_after(events: list[ev.Event], look: ev.Look) -> np.ndarray:
    """The reply audio that follows a look, at 16 kHz (as ``speech.hear`` reads it)."""
    index = events.index(look)
    chunks = [e for e in events[index:] if isinstance(e, ev.AudioOut)]
    audio = np.concatenate([c.samples() for c in chunks]).astype(np.float32)
    return np.asarray(soxr.resample(audio, chunks[0].sample_rate, 16000), dtype=np.float32)
