"""The other process of the ring stress tests: produces or consumes a checkable message stream."""

from __future__ import annotations

import os
import random
import select
import sys

from sonic_bridge.ipc.ring import Doorbell, SharedRing

PATTERN = random.Random(20261121).randbytes(1 << 17) * 2  # same bytes in both processes


def message(seq: int, max_size: int) -> bytes:
    h = (seq * 2654435761) & 0xFFFFFFFF
    size = (h % 2048) if h % 100 else (h % max_size)  # mostly small, now and then up to the ring's limit
    offset = (h >> 8) % (1 << 17)
    return seq.to_bytes(8, "little") + PATTERN[offset : offset + max(0, size - 8)]


def produce(ring: SharedRing, bell: Doorbell, count: int, max_size: int) -> None:
    for seq in range(count):
        data = message(seq, max_size)
        while not ring.try_write(data):
            os.sched_yield()
        bell.ring()


def consume(ring: SharedRing, bell: Doorbell, count: int, max_size: int) -> int:
    seq = 0
    while seq < count:
        item = ring.read()
        if item is None:
            select.select([bell.fd], [], [], 0.05)
            bell.drain()
            continue
        if item[0] != message(seq, max_size):
            raise SystemExit(f"message {seq} corrupted")
        seq += 1
    return seq


if __name__ == "__main__":
    role, ring_fd, bell_fd, count, max_size = sys.argv[1], *map(int, sys.argv[2:6])
    ring, bell = SharedRing.attach(ring_fd), Doorbell(bell_fd)
    if role == "produce":
        produce(ring, bell, count, max_size)
    else:
        consume(ring, bell, count, max_size)
        print("consumed", count)
