"""The latest-frame slot (seqlock in a memfd), by plain calls, like the ring."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from sonic_bridge.vision import slot as slot_module
from sonic_bridge.vision.slot import FrameSlot, frame_pixels


def solid(h: int, w: int, value: int) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_a_written_frame_is_read_back_as_a_copy_with_its_format_and_capture_time() -> None:
    writer = FrameSlot.create(64 * 64 * 3)
    reader = FrameSlot.attach(os.dup(writer.fd))
    try:
        assert reader.read() is None  # nothing written yet
        frame = np.arange(48 * 32 * 3, dtype=np.uint8).reshape(32, 48, 3)
        assert writer.write(frame, "bgr24", 123_456_789) == 1
        got = reader.read()
        assert got is not None
        assert (got.number, got.width, got.height, got.pixel_format, got.captured_ns) == (1, 48, 32, "bgr24",
                                                                                           123_456_789)
        assert np.array_equal(got.pixels, frame)
        writer.write(solid(32, 48, 7), "rgb24", 5)
        assert int(got.pixels[0, 0, 0]) == 0  # the reader's copy is its own
    finally:
        reader.close()
        writer.close()


def test_only_a_newer_frame_is_read_and_a_smaller_frame_replaces_a_larger_one() -> None:
    writer = FrameSlot.create(64 * 64 * 3)
    try:
        writer.write(solid(64, 64, 1), "rgb24", 1)
        first = writer.read()
        assert first is not None and first.number == 1
        assert writer.read(newer_than=1) is None
        writer.write(solid(8, 16, 2), "rgb24", 2)
        second = writer.read(newer_than=1)
        assert second is not None and (second.number, second.width, second.height) == (2, 16, 8)
        assert int(second.pixels.max()) == 2
    finally:
        writer.close()


def test_a_strided_view_is_copied_as_the_picture_it_shows() -> None:
    writer = FrameSlot.create(100 * 100 * 3)
    try:
        big = np.random.default_rng(1).integers(0, 255, (100, 100, 3), dtype=np.uint8)
        view = big[::2, 10:60:1]  # not contiguous
        writer.write(view, "rgb24", 0)
        got = writer.read()
        assert got is not None and np.array_equal(got.pixels, view)
    finally:
        writer.close()


def test_a_frame_larger_than_the_slot_is_refused_before_anything_changes() -> None:
    writer = FrameSlot.create(10 * 10 * 3)
    try:
        writer.write(solid(10, 10, 3), "rgb24", 0)
        with pytest.raises(ValueError, match="11x10 frame needs 330 bytes; the slot holds 300"):
            writer.write(solid(10, 11, 4), "rgb24", 0)
        got = writer.read()
        assert got is not None and got.number == 1 and int(got.pixels.max()) == 3
    finally:
        writer.close()


def test_a_read_during_a_write_is_retried_then_given_up_never_torn() -> None:
    writer = FrameSlot.create(4 * 4 * 3)
    try:
        writer.write(solid(4, 4, 9), "rgb24", 0)
        words = writer._words
        words[0] = words[0] + 1  # a writer stopped halfway (odd sequence)
        assert writer.read() is None
        assert writer.torn_reads == 1
        words[0] = words[0] + 1  # it finished
        got = writer.read()
        assert got is not None and int(got.pixels.max()) == 9
    finally:
        writer.close()


def test_a_reader_racing_a_writer_only_ever_sees_whole_frames() -> None:
    """Each frame is one uniform value: a torn copy would mix two values."""
    writer = FrameSlot.create(240 * 320 * 3)
    reader = FrameSlot.attach(os.dup(writer.fd))
    stop = threading.Event()

    def write() -> None:
        value = 0
        while not stop.is_set():
            value = (value + 1) % 251
            writer.write(solid(240, 320, value), "rgb24", value)
            time.sleep(0.0005)  # a fast camera; still far faster than the host's one frame per interval

    thread = threading.Thread(target=write)
    thread.start()
    seen = 0
    try:
        last = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            got = reader.read(last)
            if got is None:
                continue
            last = got.number
            assert int(got.pixels.min()) == int(got.pixels.max()) == got.captured_ns
            seen += 1
    finally:
        stop.set()
        thread.join()
        reader.close()
        writer.close()
    assert seen > 10


def test_another_process_reads_the_frame_through_the_inherited_fd() -> None:
    writer = FrameSlot.create(20 * 30 * 3)
    try:
        writer.write(solid(20, 30, 77), "bgr24", 42)
        code = ("import sys; from sonic_bridge.vision.slot import FrameSlot; s = FrameSlot.attach(int(sys.argv[1])); "
                "f = s.read(); print(f.number, f.width, f.height, f.pixel_format, f.captured_ns, int(f.pixels.mean()))")
        out = subprocess.run([sys.executable, "-c", code, str(writer.fd)], pass_fds=[writer.fd], capture_output=True,
                             text=True, timeout=60, check=True)
        assert out.stdout.split() == ["1", "30", "20", "bgr24", "42", "77"]
    finally:
        writer.close()


def test_a_mismatched_header_is_refused_on_attach() -> None:
    writer = FrameSlot.create(300)
    fd = os.dup(writer.fd)
    try:
        os.ftruncate(fd, 64 + 600)
        with pytest.raises(ValueError, match="header says 300 bytes, map has 600"):
            FrameSlot.attach(fd)
    finally:
        os.close(fd)
        writer.close()


@pytest.mark.parametrize(("frame", "error", "message"), [
    ([[1, 2, 3]], TypeError, "numpy uint8 array"),
    (np.zeros((4, 4, 3), np.float32), TypeError, "must be uint8"),
    (np.zeros((4, 4), np.uint8), ValueError, r"shaped \[H, W, 3\] or \[1, H, W, 3\].*got \(4, 4\)"),
    (np.zeros((2, 4, 4, 3), np.uint8), ValueError, r"got \(2, 4, 4, 3\)"),
    (np.zeros((4, 4, 4), np.uint8), ValueError, "3 colour channels"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "at least one pixel"),
    (np.zeros((20, 20, 3), np.uint8), ValueError, r"20x20 video frame \(1200 bytes\) is larger than "
     r"vision.max_frame_bytes=1000"),
])
def test_bad_frames_are_refused_with_what_is_wrong(frame: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        frame_pixels(frame, 1000)


def test_a_batch_of_one_frame_is_taken_as_the_frame() -> None:
    view = frame_pixels(np.zeros((1, 5, 6, 3), np.uint8), 1000)
    assert view.shape == (5, 6, 3)
    assert slot_module.FORMATS == ("rgb24", "bgr24")
