"""The latest-frame slot: one camera frame in shared memory (memfd), written by the host, read by the worker.

A seqlock, so neither side ever takes a lock or waits for the other: the writer makes the sequence word odd,
writes the header and the pixels, then makes it even again; a reader copies the frame between two loads of
the sequence word and keeps the copy only when both loads saw the same even value. A reader that keeps
losing the race (a writer faster than a copy) gives up for this time and tries at its next sample: a slow
worker simply sees the newest frame. The writer never looks at the reader at all.

Layout (u64 words, little-endian), then the pixels:

    0  sequence     odd while a frame is being written
    1  capacity     pixel bytes the slot holds (checked on attach)
    2  number       frames written so far (1 for the first), so a reader can tell a new frame from the last
    3  height       4  width       5  pixel format (0 rgb24, 1 bgr24)
    6  captured     capture time of the frame, time.monotonic_ns() clock
    64 bytes in: height * width * 3 bytes of pixels, rows packed

The memfd is as large as the largest frame allowed, but only the pages a frame touches take memory.
Publication on weakly ordered CPUs uses the rings' fence (see ``sonic_bridge.ipc.ring``).
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic_bridge.ipc.ring import _fence, new_memfd

_SEQ, _CAPACITY, _NUMBER, _HEIGHT, _WIDTH, _FORMAT, _CAPTURED = range(7)
_HEADER = 64
FORMATS = ("rgb24", "bgr24")
READ_ATTEMPTS = 4
_UINT8 = np.dtype(np.uint8)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as the reader copied it: its own pixels, never a view of the shared memory."""

    number: int
    pixels: npt.NDArray[np.uint8]  # [height, width, 3]
    pixel_format: str  # "rgb24" or "bgr24"
    captured_ns: int  # time.monotonic_ns() clock

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


class FrameSlot:
    """One side of the slot: the host writes (``write``), the worker reads (``read``); never both."""

    def __init__(self, fd: int, *, owner: bool = True) -> None:
        size = os.fstat(fd).st_size
        if size < _HEADER + 3:
            raise ValueError(f"frame slot fd {fd} is too small ({size} bytes)")
        self.fd = fd
        self._owner = owner
        self._map = mmap.mmap(fd, size)
        self._words = memoryview(self._map).cast("B")[:_HEADER].cast("Q")
        self._pixels = np.frombuffer(self._map, dtype=np.uint8, offset=_HEADER)
        self.capacity = size - _HEADER
        said = int(self._words[_CAPACITY])
        if said != self.capacity:
            self._owner = False  # the caller keeps its fd when the slot is refused
            self.close()
            raise ValueError(f"frame slot fd {fd}: header says {said} bytes, map has {self.capacity}")
        self._seq = int(self._words[_SEQ])
        self.torn_reads = 0  # reads given up because the writer kept changing the frame

    @classmethod
    def create(cls, capacity: int, name: str = "sonic-bridge-frame") -> FrameSlot:
        """A new slot for frames of up to ``capacity`` bytes of pixels."""
        if capacity < 3:
            raise ValueError(f"a frame slot needs room for at least one pixel, got {capacity} bytes")
        return cls(new_memfd(name, _HEADER + capacity, _CAPACITY, capacity))

    @classmethod
    def attach(cls, fd: int) -> FrameSlot:
        return cls(fd)

    def close(self) -> None:
        if self._map.closed:
            return
        self._words.release()
        self._pixels = np.empty(0, np.uint8)  # the numpy view held an export of the map
        try:
            self._map.close()
        except BufferError:  # a reader still holds a view: the mapping goes with the process
            return
        finally:
            if self._owner:
                with contextlib.suppress(OSError):
                    os.close(self.fd)

    @property
    def closed(self) -> bool:
        return self._map.closed

    # ----------------------------------------------------------------- writer (host)
    def write(self, pixels: npt.NDArray[np.uint8], pixel_format: str, captured_ns: int) -> int:
        """Publish ``pixels`` ([H, W, 3] uint8, any strides) as the newest frame; returns its number.

        One copy into shared memory, nothing else; never waits. The caller checked shape and size.
        """
        height, width = int(pixels.shape[0]), int(pixels.shape[1])
        size = height * width * 3
        if size > self.capacity:
            raise ValueError(f"a {width}x{height} frame needs {size} bytes; the slot holds {self.capacity}")
        words = self._words
        seq = self._seq + 1
        words[_SEQ] = seq  # odd: a frame is being written
        _fence()
        np.copyto(self._pixels[:size].reshape(height, width, 3), pixels, casting="no")
        number = int(words[_NUMBER]) + 1
        words[_HEIGHT] = height
        words[_WIDTH] = width
        words[_FORMAT] = FORMATS.index(pixel_format)
        words[_CAPTURED] = captured_ns
        words[_NUMBER] = number
        _fence()  # the frame before the even sequence (release)
        words[_SEQ] = seq + 1
        self._seq = seq + 1
        return number

    # ----------------------------------------------------------------- reader (worker)
    def number(self) -> int:
        """The number of the newest frame (0: none yet). A hint: read() decides."""
        return int(self._words[_NUMBER])

    def read(self, newer_than: int = 0) -> Frame | None:
        """A copy of the newest frame if its number is above ``newer_than``; None when there is none yet,
        nothing newer, or the writer kept changing it during every attempt (counted in ``torn_reads``)."""
        words = self._words
        for _ in range(READ_ATTEMPTS):
            before = int(words[_SEQ])
            if before & 1:
                continue  # a write is in progress
            _fence()  # the sequence before the frame (acquire)
            number = int(words[_NUMBER])
            if number <= newer_than:
                return None
            height, width = int(words[_HEIGHT]), int(words[_WIDTH])
            code, captured = int(words[_FORMAT]), int(words[_CAPTURED])
            size = height * width * 3
            if size == 0 or size > self.capacity or code >= len(FORMATS):
                continue  # a torn header: the sequence check below would refuse it anyway
            pixels = self._pixels[:size].copy()
            _fence()  # the copy before the second load of the sequence
            if int(words[_SEQ]) != before:
                continue  # the writer changed the frame meanwhile: copy again
            return Frame(number, pixels.reshape(height, width, 3), FORMATS[code], captured)
        self.torn_reads += 1
        return None


def frame_pixels(frame: Any, limit: int) -> npt.NDArray[np.uint8]:
    """A host frame as an [H, W, 3] uint8 view, or a ValueError/TypeError naming what is wrong. O(1)."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"a video frame must be a numpy uint8 array shaped [H, W, 3] or [1, H, W, 3], got "
                        f"{type(frame).__name__}")
    dtype = frame.dtype
    if dtype is not _UINT8 and dtype != _UINT8:
        raise TypeError(f"a video frame must be uint8 (0..255 per channel), got {dtype}")
    shape = frame.shape
    if len(shape) == 4 and shape[0] == 1:
        frame = frame[0]
        dims = shape[1:]
    else:
        dims = shape
    if len(dims) != 3 or dims[2] != 3:
        raise ValueError(f"a video frame must be shaped [H, W, 3] or [1, H, W, 3] (3 colour channels), got {shape}")
    height, width = dims[0], dims[1]
    if height < 1 or width < 1:
        raise ValueError(f"a video frame must have at least one pixel, got shape {shape}")
    if height * width * 3 > limit:
        raise ValueError(f"a {width}x{height} video frame ({height * width * 3} bytes) is larger than "
                         f"vision.max_frame_bytes={limit}; scale it down or raise the limit")
    view: npt.NDArray[np.uint8] = frame
    return view
