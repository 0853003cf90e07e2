"""The host API from several threads at once, as OpenAvatarChat calls handlers: nothing corrupted or lost."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from sonic_bridge import BridgeConfig, SampleFormat, SonicBridge
from sonic_bridge import events as ev

FRAME = 160  # samples per pushed frame
THREADS = 4
FRAMES_PER_THREAD = 400


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch between almost any two bytecodes
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def frame(thread: int, seq: int) -> np.ndarray:
    """Each sample pair names its frame: (thread, seq), so a torn or misplaced frame is visible."""
    return np.tile(np.array([thread + 1, seq], np.int16), FRAME // 2)


def test_pushes_texts_and_polls_from_many_threads_arrive_intact_and_in_order(tiny_switch_interval: None) -> None:
    # The loopback echoes user audio (16 kHz in) as reply audio labelled 24 kHz: asking for 24 kHz int16 out
    # means no conversion either way, so the bytes are compared.
    config = BridgeConfig(backend="loopback", output_sample_rate=24000, output_format=SampleFormat.INT16)
    received: list[list[tuple[ev.Event, int]]] = [[], []]
    refused = [0] * THREADS
    done = threading.Event()

    with SonicBridge(config) as bridge:
        def pusher(t: int) -> None:
            for seq in range(FRAMES_PER_THREAD):
                while not bridge.push_audio(frame(t, seq), 16000):
                    refused[t] += 1  # ring full: the caller may retry, nothing was queued
                    time.sleep(0.001)
                if seq % 50 == 0:
                    time.sleep(0.002)

        def texter() -> None:
            for i in range(40):
                assert bridge.send_text(f"note {i}")
                time.sleep(0.001)

        def poller(k: int) -> None:
            while not done.is_set():
                received[k] += bridge.poll_timed()
                time.sleep(0.0005)
            received[k] += bridge.poll_timed()

        workers = [threading.Thread(target=pusher, args=(t,)) for t in range(THREADS)]
        workers.append(threading.Thread(target=texter))
        pollers = [threading.Thread(target=poller, args=(k,)) for k in range(2)]
        for thread in pollers + workers:
            thread.start()
        for thread in workers:
            thread.join()
        expected_bytes = THREADS * FRAMES_PER_THREAD * FRAME * 2
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = sum(len(e.pcm) for part in received for e, _ in list(part) if isinstance(e, ev.AudioOut))
            if got >= expected_bytes and sum(isinstance(e, ev.Transcript) for p in received for e, _ in list(p)) >= 40:
                break
            time.sleep(0.05)
        done.set()
        for thread in pollers:
            thread.join()
        stats = bridge.stats()

    # Two pollers shared the events: merged by the worker's send time they are the worker's order.
    merged = sorted([item for part in received for item in part], key=lambda item: item[1])
    assert len({id(e) for e, _ in merged}) == len(merged)
    pcm = b"".join(e.pcm for e, _ in merged if isinstance(e, ev.AudioOut))
    assert len(pcm) == expected_bytes, "every pushed frame came back once"
    frames = np.frombuffer(pcm, np.int16).reshape(-1, FRAME)
    last_seq = [-1] * THREADS
    for row in frames:
        thread, seq = int(row[0]) - 1, int(row[1])
        assert 0 <= thread < THREADS and np.array_equal(row, frame(thread, seq)), "a frame was torn or mixed"
        assert seq == last_seq[thread] + 1, f"thread {thread}: frame {seq} after {last_seq[thread]}"
        last_seq[thread] = seq
    assert last_seq == [FRAMES_PER_THREAD - 1] * THREADS
    notes = [e.text for e, _ in merged if isinstance(e, ev.Transcript)]
    assert notes == [f"note {i}" for i in range(40)]
    assert stats.frames_in == THREADS * FRAMES_PER_THREAD
    assert stats.frames_dropped_in == sum(refused)


def test_close_from_another_thread_while_pushing_is_quiet(tiny_switch_interval: None) -> None:
    bridge = SonicBridge(BridgeConfig(backend="loopback")).start()
    errors: list[BaseException] = []
    stop = threading.Event()
    results: list[bool] = []

    def pusher() -> None:
        try:
            while not stop.is_set():
                results.append(bridge.push_audio(np.zeros(320, np.float32), 16000))
                bridge.poll()
        except BaseException as exc:  # any exception is the failure under test
            errors.append(exc)

    threads = [threading.Thread(target=pusher) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    bridge.close()
    time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert results.count(False) >= 1 and bridge.stats().dropped_after_close >= 1
    assert bridge.closed and bridge.worker_pid is None
