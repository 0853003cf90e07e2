"""Suite 1: host <-> worker transports side by side: our ring, faster-fifo (raw bytes),
multiprocessing.Queue and an AF_UNIX SOCK_SEQPACKET socketpair.

Each transport is wrapped as two one-way channels with a non-blocking ``send`` and a ``recv`` with a
timeout, and driven by the same forked peer: paced one-way latency (a 20 ms host cycle), host write
cost, burst throughput, round trip, CPU of both sides. The crash test runs in its own process per
transport, so a transport that hangs its host cannot hang the benchmark.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Protocol

import numpy as np

from sonic_bridge.ipc.ring import Doorbell, SharedRing

STAMP = struct.Struct("<cq")  # kind, send time (monotonic ns)
NAMES = ("ring", "faster_fifo", "mp_queue", "unix_seqpacket")


class Channel(Protocol):
    def send(self, data: bytes) -> bool: ...
    def recv(self, timeout: float) -> bytes | None: ...


class RingChannel:
    def __init__(self, capacity: int = 4 << 20) -> None:
        self.ring = SharedRing.create(capacity)
        self.bell = Doorbell()

    def send(self, data: bytes) -> bool:
        if not self.ring.try_write(data):
            return False
        self.bell.ring()
        return True

    def recv(self, timeout: float) -> bytes | None:
        item = self.ring.read()
        if item is None:
            select.select([self.bell.fd], [], [], timeout)
            self.bell.drain()
            item = self.ring.read()
        return None if item is None else item[0]


class SeqpacketChannel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> bool:
        try:
            self.sock.send(data, socket.MSG_DONTWAIT)
            return True
        except BlockingIOError:
            return False

    def recv(self, timeout: float) -> bytes | None:
        if not select.select([self.sock], [], [], timeout)[0]:
            return None
        return self.sock.recv(1 << 20)


class QueueChannel:
    def __init__(self, q: Any) -> None:
        self.q = q

    def send(self, data: bytes) -> bool:
        try:
            self.q.put_nowait(data)
            return True
        except queue.Full:
            return False

    def recv(self, timeout: float) -> bytes | None:
        try:
            data: bytes = self.q.get(timeout=max(timeout, 1e-3))
            return bytes(data)
        except queue.Empty:
            return None


def _identity(data: bytes) -> bytes:
    return data


def _copy(data: Any) -> bytes:
    return bytes(data)


def make_pair(name: str) -> tuple[Channel, Channel]:
    """(host -> peer, peer -> host)"""
    if name == "ring":
        return RingChannel(), RingChannel()
    if name == "unix_seqpacket":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        return _Duplex(a, b), _Duplex(b, a)
    if name == "faster_fifo":
        import faster_fifo

        return (QueueChannel(faster_fifo.Queue(4 << 20, dumps=_identity, loads=_copy)),
                QueueChannel(faster_fifo.Queue(4 << 20, dumps=_identity, loads=_copy)))
    if name == "mp_queue":
        ctx = mp.get_context("fork")
        return QueueChannel(ctx.Queue()), QueueChannel(ctx.Queue())
    raise ValueError(f"unknown transport {name!r}")


class _Duplex:
    """One direction of a socketpair: send on ``out``, receive on ``inp`` (the peer's end swaps them)."""

    def __init__(self, out: socket.socket, inp: socket.socket) -> None:
        self.out, self.inp = SeqpacketChannel(out), SeqpacketChannel(inp)

    def send(self, data: bytes) -> bool:
        return self.out.send(data)

    def recv(self, timeout: float) -> bytes | None:
        return self.inp.recv(timeout)


def _peer(to_peer: Channel, to_host: Channel, results: Any) -> None:
    """P: paced sample (record one-way latency); E: echo; B: burst (count); Q: report and quit."""
    latencies: list[int] = []
    burst = 0
    burst_first = burst_last = 0
    cpu0 = os.times()
    while True:
        data = to_peer.recv(0.5)
        if data is None:
            continue
        now = time.monotonic_ns()
        kind, sent = STAMP.unpack_from(data)
        if kind == b"P":
            latencies.append(now - sent)
        elif kind == b"E":
            while not to_host.send(data):
                time.sleep(0)
        elif kind == b"B":
            burst_first = burst_first or now
            burst_last = now
            burst += 1
        elif kind == b"C":
            cpu0 = os.times()
        elif kind == b"Q":
            cpu1 = os.times()
            results.send({"latencies": latencies, "burst": burst, "burst_span_ns": burst_last - burst_first,
                          "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)})
            return


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure(name: str, size: int, paced: int, burst: int, rtt: int) -> dict[str, Any]:
    to_peer, to_host = make_pair(name)
    ctx = mp.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=_peer, args=(to_peer, to_host, child_end), daemon=True)
    proc.start()
    pad = b"\0" * (size - STAMP.size)
    try:
        time.sleep(0.2)
        # Paced: one message per 20 ms host cycle, the write timed as the host would see it.
        to_peer.send(STAMP.pack(b"C", 0) + pad)
        writes: list[float] = []
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        for i in range(paced):
            time.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
            t0 = time.perf_counter_ns()
            to_peer.send(STAMP.pack(b"P", time.monotonic_ns()) + pad)
            writes.append((time.perf_counter_ns() - t0) / 1000)
        span = time.monotonic() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        host_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        # Round trip.
        rtts: list[float] = []
        for _ in range(rtt):
            t0 = time.perf_counter_ns()
            while not to_peer.send(STAMP.pack(b"E", 0) + pad):
                time.sleep(0)
            while to_host.recv(1.0) is None:
                pass
            rtts.append((time.perf_counter_ns() - t0) / 1000)
        # Burst: as fast as the host can write (a full transport is retried, not counted).
        full = 0
        for _ in range(burst):
            while not to_peer.send(STAMP.pack(b"B", 0) + pad):
                full += 1
                time.sleep(0)
        to_peer.send(STAMP.pack(b"Q", 0) + pad)
        if not parent_end.poll(30):
            raise RuntimeError(f"{name}: the peer did not report")
        peer = parent_end.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            os.kill(proc.pid or 0, signal.SIGKILL)
            proc.join()
        parent_end.close()
        child_end.close()
        for channel in (to_peer, to_host):
            _close(channel)
    one_way = [v / 1000 for v in peer["latencies"]]
    return {
        "transport": name, "size": size,
        "write_us": {"p50": _pct(writes, 50), "p99": _pct(writes, 99), "max": max(writes)},
        "one_way_us": {"p50": _pct(one_way, 50), "p99": _pct(one_way, 99), "max": max(one_way, default=0.0)},
        "rtt_us": {"p50": _pct(rtts, 50), "p99": _pct(rtts, 99)},
        "throughput_msgs_s": peer["burst"] / (peer["burst_span_ns"] / 1e9) if peer["burst_span_ns"] else 0.0,
        "burst_full_retries": full,
        "cpu_percent": {"host": 100 * host_cpu / span, "peer": 100 * peer["cpu_s"] / span},
    }


def _close(channel: Any) -> None:
    with contextlib.suppress(Exception):
        if isinstance(channel, RingChannel):
            channel.ring.close()
            channel.bell.close()
        elif isinstance(channel, _Duplex):
            channel.out.sock.close()
            channel.inp.sock.close()
        elif isinstance(channel, QueueChannel):
            channel.q.close()


# --------------------------------------------------------------------------- crash test
def _busy_peer(to_peer: Channel, to_host: Channel) -> None:
    payload = b"x" * 3840
    while True:  # hammer both directions, so a kill lands inside a transport call
        to_host.send(payload)
        to_peer.recv(0.0)


def crash_once(name: str, guard: float) -> str:
    """Kill the peer mid-traffic, then time the host's next write and read. Runs in its own process."""
    to_peer, to_host = make_pair(name)
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_busy_peer, args=(to_peer, to_host), daemon=True)
    proc.start()
    time.sleep(0.3)
    os.kill(proc.pid or 0, signal.SIGKILL)
    proc.join()
    t0 = time.perf_counter_ns()
    to_peer.send(b"y" * 640)
    to_host.recv(0.0)
    return f"{(time.perf_counter_ns() - t0) / 1000:.0f}"


def crash_test(name: str, tries: int, guard: float = 3.0) -> dict[str, Any]:
    worst = 0.0
    hung = 0
    for _ in range(tries):
        try:
            proc = subprocess.run([sys.executable, "-m", "sonic_bridge.bench.transports", "crash", name],
                                  capture_output=True, text=True, timeout=guard, check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                worst = max(worst, float(proc.stdout.strip().splitlines()[-1]))
        except subprocess.TimeoutExpired:
            hung += 1  # subprocess.run killed it by pid
    verdict = f"hung in {hung} of {tries} tries" if hung else f"returned in {worst:.0f} us (worst of {tries})"
    return {"transport": name, "tries": tries, "hung": hung, "worst_us": worst, "verdict": verdict}


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "crash":
    sys.stdout.write(crash_once(sys.argv[2], 3.0) + "\n")
    sys.stdout.flush()
    os._exit(0)
