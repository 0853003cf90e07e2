"""Sample-format and rate conversion in the worker, so the host pays nothing for it.

Streaming resamplers (soxr) keep their filter state between chunks: a conversation is one
continuous signal, and resampling chunk by chunk without state would click at every boundary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from sonic_bridge.events import SampleFormat

FloatArray = npt.NDArray[np.float32]


def to_float(pcm: bytes, fmt: SampleFormat) -> FloatArray:
    raw = np.frombuffer(pcm, dtype=fmt.dtype)
    if fmt is SampleFormat.INT16:
        return raw.astype(np.float32) / 32768.0
    return raw.astype(np.float32, copy=False)


def from_float(samples: FloatArray, fmt: SampleFormat) -> bytes:
    clipped = np.clip(samples, -1.0, 1.0)
    if fmt is SampleFormat.INT16:
        return (np.round(clipped * 32767.0)).astype("<i2").tobytes()
    return clipped.astype("<f4").tobytes()


class Converter:
    """One direction of audio: any host format and rate in, one format and rate out."""

    def __init__(self, out_rate: int, out_format: SampleFormat, quality: str = "HQ") -> None:
        self.quality = quality
        self.out_rate = out_rate
        self.out_format = out_format
        self._stream: Any = None
        self._in_rate = 0

    def convert(self, pcm: bytes, in_rate: int, in_format: SampleFormat) -> bytes:
        if in_rate == self.out_rate and in_format is self.out_format:
            return pcm
        samples = to_float(pcm, in_format)
        if in_rate != self.out_rate:
            if self._stream is None or in_rate != self._in_rate:
                # A new input rate starts a new stream (the host changed devices): no shared state.
                self._stream = soxr.ResampleStream(in_rate, self.out_rate, 1, dtype="float32", quality=self.quality)
                self._in_rate = in_rate
            samples = self._stream.resample_chunk(samples)
        return from_float(samples, self.out_format)

    def flush(self) -> bytes:
        """The resampler's held-back tail (end of a stream)."""
        if self._stream is None:
            return b""
        tail: FloatArray = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self._stream = None
        return from_float(tail, self.out_format)

    def reset(self) -> None:
        """Drop resampler state (after a barge-in the next response starts clean)."""
        self._stream = None
