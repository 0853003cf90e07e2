"""Single-producer/single-consumer byte ring in shared memory (memfd), plus an eventfd doorbell.

Nothing here takes a lock or waits: a write either fits or reports "full", a read either finds a
message or reports "empty". A peer that dies mid-call leaves at worst a message it never published;
it can never wedge the other side (unlike a process-shared mutex, see docs/ipc-measurements.md).

Layout of the mapping (all integers little-endian, indices are ever-growing byte counts):

    0    write index  u64   stored only by the producer
    64   read index   u64   stored only by the consumer (own cache line: no false sharing)
    128  heartbeat    u64   producer's monotonic clock, ns (liveness of a stalled peer)
    136  capacity     u64   checked on attach
    144  status       u64   stored only by the producer: a small word of its own (the worker's start-up step)
    256  data         capacity bytes of records

A record is a 16-byte header (u32 payload length, u32 spare, u64 send time in monotonic ns) then the
payload, padded to 8 bytes. A record never straddles the end: the producer writes a wrap marker and
continues at offset 0.

Memory ordering. The producer copies the payload, then publishes by storing the write index; the
consumer loads the write index, then copies the payload, then frees space by storing the read index.
Each index is a single aligned 8-byte store or load through a memoryview cast to 'Q', so it is never
torn. Between the copy and the index store ``_fence()`` runs:
  * x86-64 (TSO): stores are not reordered with stores nor loads with loads, and CPython performs
    the copy and the index store in separate C calls, which no compiler reorders; no fence needed.
  * weakly ordered CPUs (aarch64 ...): a real full barrier, libatomic's ``atomic_thread_fence
    (seq_cst)`` through ctypes; failing that, a syscall (kernel entry and its locking order memory).
The doorbell write that follows a publish is a syscall too, but correctness never depends on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import mmap
import os
import platform
import struct
import time
from collections.abc import Callable
from typing import Any

_WRITE, _READ, _HEARTBEAT, _CAPACITY, _STATUS = 0, 8, 16, 17, 18  # indices in units of u64
_DATA = 256
_HEADER = struct.Struct("<IIQ")
_WRAP = 0xFFFFFFFF
MIN_CAPACITY = 4096


def _make_fence() -> Callable[[], None]:
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return lambda: None
    name = ctypes.util.find_library("atomic")
    if name:
        try:
            fence = ctypes.CDLL(name).atomic_thread_fence
            fence.argtypes = [ctypes.c_int]
            fence.restype = None
            return lambda: fence(5)  # memory_order_seq_cst
        except (OSError, AttributeError):
            pass
    barrier_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def syscall_fence() -> None:
        os.eventfd_write(barrier_fd, 1)

    return syscall_fence


_fence = _make_fence()

# The host's hot path compiled (ipc/_hotpath.c, built at install time when a C compiler is there). Without
# it, or with SONIC_BRIDGE_PURE_PYTHON=1, the same records are written by codec.encode + try_write.
_hotpath: Any = None
if not os.environ.get("SONIC_BRIDGE_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        _hotpath = importlib.import_module("sonic_bridge.ipc._hotpath")


def new_memfd(name: str, size: int, word: int, value: int) -> int:
    """A shared-memory file of ``size`` bytes whose u64 header ``word`` holds ``value`` (its capacity, which
    the attaching side checks); the fd is closed again if anything fails."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as m:
            struct.pack_into("<Q", m, word * 8, value)
    except BaseException:
        os.close(fd)
        raise
    return fd


class RingClosed(Exception):
    pass


class SharedRing:
    """One direction of traffic. A process uses it either as producer or as consumer, never both."""

    def __init__(self, fd: int, *, owner: bool) -> None:
        size = os.fstat(fd).st_size
        if size < _DATA + MIN_CAPACITY:
            raise ValueError(f"shared ring fd {fd} is too small ({size} bytes)")
        self.fd = fd
        self._owner = owner
        self._map = mmap.mmap(fd, size)
        self._words = memoryview(self._map).cast("B")[:_DATA].cast("Q")
        self._data = memoryview(self._map)[_DATA:]
        self.capacity = size - _DATA
        if self._words[_CAPACITY] != self.capacity:
            raise ValueError(
                f"shared ring fd {fd}: header says {self._words[_CAPACITY]} bytes, map has {self.capacity}"
            )
        # Each side keeps its own index locally: only it ever changes it.
        self._w = self._words[_WRITE]
        self._r = self._words[_READ]
        self.high_water = 0

    @classmethod
    def create(cls, capacity: int, name: str = "sonic-bridge-ring") -> SharedRing:
        if capacity < MIN_CAPACITY:
            raise ValueError(f"ring capacity must be at least {MIN_CAPACITY} bytes, got {capacity}")
        capacity = (capacity + 7) & ~7
        return cls(new_memfd(name, _DATA + capacity, _CAPACITY, capacity), owner=True)

    @classmethod
    def attach(cls, fd: int) -> SharedRing:
        return cls(fd, owner=True)

    def close(self) -> None:
        if self._map.closed:
            return
        self._words.release()
        self._data.release()
        self._map.close()
        if self._owner:
            with contextlib.suppress(OSError):
                os.close(self.fd)

    @property
    def closed(self) -> bool:
        return self._map.closed

    # ----------------------------------------------------------------- producer side
    def max_message(self) -> int:
        """The largest payload accepted. Records are contiguous, so only a record of at most half the
        capacity is sure to fit an empty ring wherever the last record ended."""
        return self.capacity // 2 - _HEADER.size

    def try_write(self, payload: bytes | bytearray | memoryview, stamp_ns: int | None = None) -> bool:
        """Append one message; False when it does not fit now (the caller counts the drop)."""
        n = len(payload)
        size = (_HEADER.size + n + 7) & ~7
        cap = self.capacity
        if n > self.max_message():
            limit = self.max_message()
            raise ValueError(f"message of {n} bytes is over the limit of a {cap}-byte ring ({limit} bytes)")
        w = self._w
        free = cap - (w - self._words[_READ])
        pos = w % cap
        tail = cap - pos
        if size > tail:
            # Skip the end of the buffer. The marker is published on its own, so a large record
            # only ever needs its own size free at offset 0 (it cannot deadlock an empty ring).
            if tail > free:
                return False
            struct.pack_into("<I", self._data, pos, _WRAP)
            _fence()
            w += tail
            self._words[_WRITE] = w
            self._w = w
            free -= tail
            pos = 0
        if size > free:
            return False
        _HEADER.pack_into(self._data, pos, n, 0, time.monotonic_ns() if stamp_ns is None else stamp_ns)
        self._data[pos + _HEADER.size : pos + _HEADER.size + n] = payload
        _fence()  # payload before index (release)
        w += size
        self._words[_WRITE] = w
        self._w = w
        used = w - self._words[_READ]
        self.high_water = max(self.high_water, used)
        return True

    @property
    def compiled(self) -> bool:
        """Whether try_write_audio can take frames (the compiled hot path is built and enabled)."""
        return _hotpath is not None

    def try_write_audio(self, samples: object, sample_rate: int, seq: int, max_samples: int,
                        stamp_ns: int | None = None) -> bool | None:
        """One AudioIn record (ipc.codec's encoding) for a common frame, validated, encoded and appended in one
        compiled call: True written, False full now (counted by the caller), None not taken (not a common
        frame, a frame to refuse, or no compiled path): the caller takes the Python path."""
        if _hotpath is None:
            return None
        got = _hotpath.write_audio(self._map, self.capacity, self._w, samples, sample_rate,
                                   time.monotonic_ns() if stamp_ns is None else stamp_ns, seq, max_samples)
        if got is None:
            return None
        self._w, written = got
        if written:
            self.high_water = max(self.high_water, self._w - self._words[_READ])
        return bool(written)

    def beat(self) -> None:
        """Producer liveness: the consumer can tell a stalled peer from a quiet one."""
        self._words[_HEARTBEAT] = time.monotonic_ns()

    def set_status(self, value: int) -> None:
        """Producer's status word (e.g. its start-up step); the consumer reads it with status()."""
        self._words[_STATUS] = value

    def status(self) -> int:
        return int(self._words[_STATUS])

    # ----------------------------------------------------------------- consumer side
    def read(self) -> tuple[bytes, int] | None:
        """The next message and its send time (monotonic ns), or None when empty."""
        r = self._r
        w = self._words[_WRITE]
        if r == w:
            return None
        _fence()  # index before payload (acquire)
        cap = self.capacity
        pos = r % cap
        length = _WRAP if cap - pos < _HEADER.size else _HEADER.unpack_from(self._data, pos)[0]
        if length == _WRAP:
            r += cap - pos
            self._words[_READ] = r
            self._r = r
            if r == w:
                return None
            pos = 0
        length, _, stamp = _HEADER.unpack_from(self._data, pos)
        if length > cap - _HEADER.size:
            raise RingClosed(f"ring corrupted: record of {length} bytes at offset {pos}")
        payload = bytes(self._data[pos + _HEADER.size : pos + _HEADER.size + length])
        _fence()  # payload copied before the space is handed back
        r += (_HEADER.size + length + 7) & ~7
        self._words[_READ] = r
        self._r = r
        return payload, stamp

    def pending_bytes(self) -> int:
        return int(self._words[_WRITE] - self._r)

    def heartbeat_ns(self) -> int:
        return int(self._words[_HEARTBEAT])


class Doorbell:
    """An eventfd the producer rings after publishing, so the consumer can sleep instead of spin."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if fd is None else fd
        os.set_blocking(self.fd, False)

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_write(self.fd, 1)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
