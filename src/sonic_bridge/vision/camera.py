"""The worker's camera: samples the latest-frame slot, encodes each new frame once, keeps the window.

Sampling runs every half interval, so each frame the host keeps (one per interval) is taken soon after it
arrives; a frame the host replaced before it was read is simply never seen (a slow worker sees the newest
frame). Reading the slot and encoding run in a thread: the event loop keeps serving the voice stream.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from sonic_bridge.vision.encoder import encode_jpeg
from sonic_bridge.vision.settings import VisionSettings
from sonic_bridge.vision.slot import FrameSlot
from sonic_bridge.vision.window import FrameWindow, Shot

log = logging.getLogger("sonic_bridge.vision")
ENCODE_SAMPLES = 256


class Camera:
    def __init__(self, slot: FrameSlot | None, settings: VisionSettings) -> None:
        self.slot = slot
        self.settings = settings
        self.window = FrameWindow(settings.window)
        self.encoded = 0
        self.encode_seconds: collections.deque[float] = collections.deque(maxlen=ENCODE_SAMPLES)
        self._last = 0  # number of the newest frame taken
        self._lock = asyncio.Lock()

    async def sample(self) -> Shot | None:
        """Take the newest frame into the window if it is new; the shot taken, or None."""
        if self.slot is None:
            return None
        async with self._lock:
            shot = await asyncio.to_thread(self._take, self._last)
            if shot is None:
                return None
            self._last = shot.number
            self.window.add(shot)
            self.encoded += 1
            return shot

    def _take(self, newer_than: int) -> Shot | None:
        assert self.slot is not None
        frame = self.slot.read(newer_than)
        if frame is None:
            return None
        started = time.perf_counter()
        jpeg, width, height = encode_jpeg(frame.pixels, frame.pixel_format, self.settings.max_side,
                                          self.settings.jpeg_quality)
        self.encode_seconds.append(time.perf_counter() - started)
        return Shot(frame.number, jpeg, width, height, frame.captured_ns / 1e9)

    async def run(self) -> None:
        """Sample for as long as the worker serves; a failure is logged and sampling goes on."""
        period = self.settings.frame_interval_s / 2
        while True:
            try:
                await self.sample()
            except Exception:
                log.exception("could not sample a camera frame")
            await asyncio.sleep(period)
