"""The worker's window of recent camera frames (JPEGs with their capture times) and the pick for a look."""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Shot:
    """One sampled frame, ready to send: a JPEG of ``width`` x ``height`` captured at ``captured`` (monotonic s)."""

    number: int
    jpeg: bytes
    width: int
    height: int
    captured: float


class FrameWindow:
    """The last ``size`` shots, oldest first; older ones are gone (never sent late)."""

    def __init__(self, size: int) -> None:
        self._shots: collections.deque[Shot] = collections.deque(maxlen=size)

    def add(self, shot: Shot) -> None:
        self._shots.append(shot)

    def __len__(self) -> int:
        return len(self._shots)

    def newest(self) -> Shot | None:
        return self._shots[-1] if self._shots else None

    def shots(self) -> list[Shot]:
        return list(self._shots)

    def pick(self, count: int) -> list[Shot]:
        """Up to ``count`` shots evenly spread over the window in time order, the newest always last."""
        return spread(self.shots(), count)


def spread(items: list[Shot], count: int) -> list[Shot]:
    """``count`` of ``items`` at evenly spaced positions, first and last included (all when there are fewer)."""
    n = len(items)
    if count <= 0 or n == 0:
        return []
    if count >= n:
        return list(items)
    if count == 1:
        return [items[-1]]
    # Positions 0 .. n-1 in count steps, rounded: strictly increasing because count < n.
    picks = [round(i * (n - 1) / (count - 1)) for i in range(count)]
    return [items[i] for i in picks]
