from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sonic_bridge.ipc.ring import Doorbell, SharedRing
from tests.helpers import end_process
from tests.ring_peer import consume, message

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def ring() -> SharedRing:
    r = SharedRing.create(64 * 1024)
    yield r  # type: ignore[misc]
    r.close()


def test_messages_come_out_in_order_across_many_wrap_arounds(ring: SharedRing) -> None:
    consumer = SharedRing.attach(os.dup(ring.fd))
    try:
        for seq in range(20_000):
            data = message(seq, 30_000)
            assert ring.try_write(data)
            got = consumer.read()
            assert got is not None and got[0] == data
        assert consumer.read() is None
    finally:
        consumer.close()


def test_a_full_ring_refuses_without_waiting_and_recovers(ring: SharedRing) -> None:
    consumer = SharedRing.attach(os.dup(ring.fd))
    try:
        written = 0
        start = time.perf_counter()
        while ring.try_write(b"x" * 1000):
            written += 1
        assert time.perf_counter() - start < 1.0
        assert written == 64 * 1024 // 1016  # 1016-byte records in 64 KiB, nothing lost or overwritten
        assert ring.high_water >= 60_000
        first = consumer.read()
        assert first is not None and first[0] == b"x" * 1000
        assert ring.try_write(b"z" * 1000)  # the freed space is usable again
        got = [consumer.read() for _ in range(written)]
        assert [g[0] for g in got if g] == [b"x" * 1000] * (written - 1) + [b"z" * 1000]
    finally:
        consumer.close()


def test_oversized_messages_are_refused_with_a_clear_error(ring: SharedRing) -> None:
    with pytest.raises(ValueError, match="over the limit"):
        ring.try_write(b"\0" * (ring.max_message() + 1))
    assert ring.try_write(b"\0" * ring.max_message())


def test_attach_rejects_a_descriptor_that_is_not_a_ring() -> None:
    fd = os.memfd_create("not-a-ring")
    try:
        os.ftruncate(fd, 100)
        with pytest.raises(ValueError, match="too small"):
            SharedRing.attach(fd)
    finally:
        os.close(fd)


def _peer(role: str, ring: SharedRing, bell: Doorbell, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.ring_peer",
            role,
            str(ring.fd),
            str(bell.fd),
            str(count),
            str(ring.max_message()),
        ],
        pass_fds=[ring.fd, bell.fd],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_a_million_messages_between_two_processes_arrive_intact() -> None:
    ring, bell = SharedRing.create(256 * 1024), Doorbell()
    count = 1_000_000
    try:
        proc = _peer("produce", ring, bell, count)
        assert consume(ring, bell, count, ring.max_message()) == count
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
        assert ring.read() is None
    finally:
        end_process(proc)
        ring.close()
        bell.close()


def test_killing_the_producer_mid_traffic_leaves_the_consumer_running() -> None:
    ring, bell = SharedRing.create(64 * 1024), Doorbell()
    proc = _peer("produce", ring, bell, 10**9)
    try:
        seq = 0
        while seq < 2000:
            item = ring.read()
            if item is not None:
                assert item[0] == message(seq, ring.max_message())
                seq += 1
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(5) == -signal.SIGKILL  # the consumer knows the peer is gone
        start = time.perf_counter()
        while (item := ring.read()) is not None:  # what was published stays intact
            assert item[0] == message(seq, ring.max_message())
            seq += 1
        assert ring.read() is None
        assert time.perf_counter() - start < 1.0
    finally:
        end_process(proc)
        ring.close()
        bell.close()


def test_killing_the_consumer_never_blocks_the_producer() -> None:
    ring, bell = SharedRing.create(64 * 1024), Doorbell()
    proc = _peer("consume", ring, bell, 10**9)
    try:
        seq = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if ring.try_write(message(seq, ring.max_message())):
                bell.ring()
                seq += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        worst = 0.0
        for _ in range(2000):
            t = time.perf_counter()
            if ring.try_write(message(seq, ring.max_message())):
                seq += 1
            worst = max(worst, time.perf_counter() - t)
        assert worst < 0.05  # returns "full" at once once the dead consumer stops freeing space
        assert not ring.try_write(b"\0" * 30_000)  # the dead consumer frees nothing: full stays full
    finally:
        end_process(proc)
        ring.close()
        bell.close()


def test_a_large_message_fits_an_empty_ring_wherever_the_last_one_ended(ring: SharedRing) -> None:
    consumer = SharedRing.attach(os.dup(ring.fd))
    try:
        for size in (20_000, 30_000, 32_000, 10_000, 32_000, 32_000):  # each needs a wrap the previous left
            assert ring.try_write(b"a" * size)
            got = consumer.read()
            assert got is not None and len(got[0]) == size
        assert consumer.read() is None
    finally:
        consumer.close()
