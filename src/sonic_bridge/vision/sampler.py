"""Which pushed camera frames are kept: one per interval, decided on the host in O(1), before any copy."""

from __future__ import annotations


class KeepEvery:
    """Keep a frame when at least ``interval`` seconds of capture time passed since the last one kept.

    Capture time going backwards (a video file restarted, a new camera clock) keeps the frame and starts
    over from it, so a jump never silences the camera.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None

    def keep(self, captured: float) -> bool:
        last = self._last
        if last is None or captured - last >= self.interval or captured < last:
            self._last = captured
            return True
        return False
