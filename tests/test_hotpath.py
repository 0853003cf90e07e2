"""The compiled hot path (ipc/_hotpath.c) and its Python twin (codec.encode + SharedRing.try_write) write the
same bytes, take the same frames and leave the rest, and a bridge behaves the same on either."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonic_bridge import BridgeConfig, SonicBridge
from sonic_bridge.events import SampleFormat
from sonic_bridge.ipc import codec, ring
from sonic_bridge.ipc import messages as msg

compiled = pytest.mark.skipif(ring._hotpath is None, reason="the compiled hot path is not built here")
CAPACITY = 8192  # small: the frames below (up to 4014 bytes, its message limit is 4080) wrap it often


@pytest.fixture
def rings() -> Iterator[tuple[ring.SharedRing, ring.SharedRing]]:
    a, b = ring.SharedRing.create(CAPACITY), ring.SharedRing.create(CAPACITY)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def python_write(target: ring.SharedRing, samples: np.ndarray, rate: int, seq: int, stamp: int) -> bool:
    fmt = SampleFormat.FLOAT32 if samples.dtype == np.float32 else SampleFormat.INT16
    return target.try_write(codec.encode(msg.AudioIn(samples.tobytes(), rate, fmt, seq)), stamp)


frames = st.tuples(
    st.sampled_from(["float32", "int16"]), st.integers(1, 1000), st.sampled_from(["n", "1n", "n1"]),
    st.integers(0, 2**40), st.booleans())


@compiled
@settings(max_examples=60, deadline=None)
@given(st.lists(frames, min_size=1, max_size=40), st.integers(0, 2**31))
def test_both_paths_write_the_same_bytes_through_wraps_and_full_rings(script: list[Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = ring.SharedRing.create(CAPACITY), ring.SharedRing.create(CAPACITY)
    try:
        for dtype, count, shape, seq, read_first in script:
            if read_first:  # the consumer takes one record from each: the read index moves, space frees up
                assert (a.read() is None) == (b.read() is None)
            samples = (rng.uniform(-1, 1, count) * (1 if dtype == "float32" else 32767)).astype(dtype)
            if shape == "1n":
                samples = samples.reshape(1, -1)
            elif shape == "n1":
                samples = samples.reshape(-1, 1)
            stamp = 10**18 + seq
            hot = a.try_write_audio(samples, 16000, seq, 160000, stamp)
            assert hot is not None
            assert hot == python_write(b, samples, 16000, seq, stamp)
            assert bytes(a._map) == bytes(b._map)  # every byte of the mapping, indices included
            assert (a._w, a.high_water) == (b._w, b.high_water)
        while (got := a.read()) is not None:
            record = codec.decode(got[0])
            assert isinstance(record, msg.AudioIn) and record.sample_rate == 16000
    finally:
        a.close()
        b.close()


@compiled
@pytest.mark.parametrize("frame", [
    np.zeros(320, np.float64),                                # another dtype
    np.zeros(320, ">f4"),                                     # big-endian
    np.zeros(640, np.float32)[::2],                           # not contiguous
    np.zeros((2, 320), np.float32),                           # stereo
    np.zeros((1, 1, 320), np.int16),                          # three dimensions
    np.zeros(0, np.float32),                                  # empty
    np.zeros(160001, np.int16),                               # longer than the limit
    np.array([0.0, np.nan, 0.0], np.float32),                 # NaN
    np.array([np.inf], np.float32),                           # infinity
    np.zeros(CAPACITY, np.int16),                             # over the ring's message limit
    b"\x00\x00" * 320,                                        # bytes: the Python path's
], ids=["float64", "big-endian", "strided", "stereo", "3d", "empty", "too-long", "nan", "inf", "huge", "bytes"])
def test_frames_the_compiled_path_leaves_to_python_are_not_written(
        rings: tuple[ring.SharedRing, ring.SharedRing], frame: Any) -> None:
    a, _ = rings
    before = bytes(a._map)
    assert a.try_write_audio(frame, 16000, 1, 160000) is None
    assert bytes(a._map) == before


@pytest.fixture(params=["compiled", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "compiled" and ring._hotpath is None:
        pytest.skip("the compiled hot path is not built here")
    if request.param == "python":
        monkeypatch.setattr(ring, "_hotpath", None)
    return str(request.param)


def test_a_bridge_takes_and_refuses_the_same_frames_on_either_path(path: str) -> None:
    with SonicBridge(BridgeConfig(backend="loopback", inbound_capacity=64 * 1024)) as bridge:
        assert bridge._inbound is not None and bridge._inbound.compiled == (path == "compiled")
        assert bridge.push_audio(np.zeros(320, np.float32), 16000)
        assert bridge.push_audio(np.zeros((1, 320), np.int16), 16000)
        assert bridge.push_audio(np.zeros(320, ">f4"), 16000)  # the Python path converts it
        with pytest.raises(ValueError, match="NaN or infinite"):
            bridge.push_audio(np.array([0.0, np.nan], np.float32), 16000)
        with pytest.raises(ValueError, match="empty"):
            bridge.push_audio(np.zeros(0, np.int16), 16000)
        with pytest.raises(ValueError, match="longer than 10 s"):
            bridge.push_audio(np.zeros(16000 * 11, np.int16), 16000)
        with pytest.raises(ValueError, match="mono"):
            bridge.push_audio(np.zeros((2, 320), np.float32), 16000)
        with pytest.raises(ValueError, match="sample_rate"):
            bridge.push_audio(np.zeros(320, np.float32), 12345)
        with pytest.raises(ValueError, match="sample_rate"):
            bridge.push_audio(np.zeros(320, np.float32), True)
        pushed = 3
        while bridge.push_audio(np.zeros(1600, np.float32), 16000):  # until the ring is full: then counted
            pushed += 1
        stats = bridge.stats()
        assert stats.frames_in == pushed and stats.frames_dropped_in == 1
        assert stats.bytes_in == 320 * 4 + 320 * 2 + 320 * 4 + (pushed - 3) * 1600 * 4
