"""``SonicBridge``: the host's synchronous facade. No call blocks, whatever the worker is doing.

Every call on the cycle path (push_audio, send_text, send_tool_result, poll, stats) touches only
shared memory, one eventfd write, an uncontended lock and ``waitpid(WNOHANG)``; none waits on the
worker. Only ``wait`` (by design) and ``close`` (bounded by its timeout) may sleep.

Threads: the producer side (push_audio, send_text, send_tool_result) is serialised by one lock, so any
number of host threads may call it; the ring itself stays single-producer. poll()/poll_timed() are
serialised by another lock: concurrent polls each get a disjoint share of the events, in order. The
two locks are only ever held for microseconds (a worker restart inside a poll holds the consumer lock
for the few milliseconds a process spawn takes), and a producer never waits for a poller.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import logging
import math
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge._version import __version__
from sonic_bridge.engines.sonic.history import Message, tool_call_line, tool_result_line
from sonic_bridge.engines.sonic.protocol import tool_result_text
from sonic_bridge.host import launch
from sonic_bridge.host.config import HOST_RATES, BridgeConfig
from sonic_bridge.host.group import GroupClosed, GroupSession, WorkerGroup
from sonic_bridge.host.pool import PooledWorker, WorkerPool
from sonic_bridge.host.process import WorkerProcess
from sonic_bridge.host.supervise import Supervisor
from sonic_bridge.ipc import codec, handshake
from sonic_bridge.ipc import messages as msg
from sonic_bridge.ipc.ring import Doorbell, SharedRing
from sonic_bridge.settings import Inference, Tool
from sonic_bridge.vision.sampler import KeepEvery
from sonic_bridge.vision.slot import FORMATS as VIDEO_FORMATS
from sonic_bridge.vision.slot import FrameSlot, frame_pixels

log = logging.getLogger("sonic_bridge.client")

MAX_FRAME_SECONDS = 10.0
_RATES = frozenset(HOST_RATES)
MAX_MESSAGES_PER_POLL = 4096
LATENCY_SAMPLES = 2048


class BridgeClosed(RuntimeError):
    """The bridge was closed (by the host, or because the worker could not be kept alive)."""


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # update_session: leave this setting as it is


@dataclass
class BridgeStats:
    state: ev.BridgeState
    worker_pid: int | None
    restarts: int
    frames_in: int = 0
    bytes_in: int = 0
    frames_dropped_in: int = 0  # the worker was not keeping up (inbound ring full)
    dropped_after_close: int = 0  # pushes and sends refused quietly because the bridge was closed
    messages_out: int = 0
    audio_frames_out: int = 0
    bytes_out: int = 0
    audio_dropped_interrupted: int = 0
    worker_frames_sent: int = 0
    worker_frames_dropped: int = 0
    worker_drop_reason: str = ""
    inbound_high_water: int = 0
    outbound_pending: int = 0
    worker_version: str = ""
    worker_python: str = ""
    latency_us: dict[str, float] = field(default_factory=dict)
    worker_rss_bytes: int = 0  # the worker's resident memory, read from /proc at most once a second
    worker_cpu_seconds: float = 0.0  # its CPU time (user + system) so far
    worker_cpu_percent: float = 0.0  # of one core, over the last second or so
    video_frames_in: int = 0  # push_video calls that were accepted
    video_frames_kept: int = 0  # of those, copied into the frame slot (one per vision.frame_interval_s)
    video_frames_dropped: int = 0  # of those, not kept: the sampler had one for that interval already


class _Worker(WorkerProcess):
    """One session's own worker process and what the bridge tracks of it."""

    def __init__(
        self,
        python: str,
        config: BridgeConfig,
        config_json: bytes,
        inbound: SharedRing,
        in_bell: Doorbell,
        outbound: SharedRing,
        out_bell: Doorbell,
        video_slot: int | None = None,
        *,
        pooled: bool = False,
    ) -> None:
        self.python = python
        self.hello: handshake.Hello | None = None
        self.serving = False
        fds = {"in-ring": inbound.fd, "in-bell": in_bell.fd, "out-ring": outbound.fd, "out-bell": out_bell.fd}
        if video_slot is not None:
            fds["video-slot"] = video_slot
        super().__init__(python, config.worker_env, config_json, fds, pooled=pooled)
        self.started = time.monotonic()


class SonicBridge:
    """A Nova Sonic session in a worker process, driven from a synchronous host.

    >>> with SonicBridge(BridgeConfig()) as bridge:       # doctest: +SKIP
    ...     bridge.push_audio(frame, 16000)
    ...     for event in bridge.poll(): ...

    Once closed (by close(), or because the worker could not be kept alive) the bridge is quiet and
    cheap: pushes and sends return False (counted in ``stats().dropped_after_close``), poll() returns
    the last events and then empty lists, and wait() raises BridgeClosed so no host loop can spin.
    """

    def __init__(self, config: BridgeConfig | None = None, *, pool: WorkerPool | None = None,
                 group: WorkerGroup | None = None) -> None:
        """``pool``: pre-started workers to take one from at start() when its set-up fits (see host.pool).
        ``group``: run the session in one of the group's shared worker processes (see host.group); raises
        ValueError when the configuration cannot share them."""
        self.config = config if config is not None else BridgeConfig()
        self._pool = pool
        self._group = group
        if not isinstance(self.config, BridgeConfig):
            raise TypeError(f"SonicBridge takes a BridgeConfig, got {type(self.config).__name__}")
        if group is not None:
            if not isinstance(group, WorkerGroup):
                raise TypeError(f"group must be a WorkerGroup, got {type(group).__name__}")
            if pool is not None:
                raise ValueError("a bridge takes a pool= (a worker of its own, pre-started) or a group= (a shared "
                                 "worker), not both")
            group.check(self.config)
        self._model = self.config.session.model
        self._python = ""
        self._inbound: SharedRing | None = None
        self._outbound: SharedRing | None = None
        self._in_bell: Doorbell | None = None
        self._out_bell: Doorbell | None = None
        self._worker: _Worker | GroupSession | None = None
        self._state = ev.BridgeState.CLOSED
        self._started = False
        self._closing = False
        self._closed = False
        self._close_reason: ev.Error | None = None
        self._tx = threading.Lock()  # producer side: inbound writes, their counters, the rings' lifetime
        self._rx = threading.RLock()  # consumer side and lifecycle: polls, restarts, close
        self._ux = threading.Lock()  # update_session: one at a time (never held with _rx)
        self._user_spoke = False  # a USER transcript or typed text was seen: a restart does not greet again
        self._supervisor: Supervisor | None = None  # the worker's RSS and CPU from /proc, and its limits
        self._supervised_serving = False
        self._limited = self.config.max_worker_memory_mb is not None or self.config.max_worker_cpu is not None
        self._local: list[ev.Event] = []
        self._stamps: list[int] = []  # worker send time (monotonic ns) of each event in _local
        self._restarts = 0
        self._seq = 0
        self._stats = BridgeStats(ev.BridgeState.CLOSED, None, 0)
        self._unreported_drops = 0
        self._interrupted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._latency: collections.deque[int] = collections.deque(maxlen=LATENCY_SAMPLES)
        self._pending_tools: dict[str, str] = {}
        self._history: list[Message] = list(self.config.session.history)
        self._stall_reported = False
        # A heartbeat younger than this proves the worker alive without a waitpid (it beats every 100 ms).
        self._fresh_ns = int(min(0.25, self.config.stall_timeout / 2) * 1e9)
        self._slot: FrameSlot | None = None  # the latest camera frame, when vision is enabled
        self._vx = threading.Lock()  # push_video: the sampler and the slot's single writer
        self._keep = KeepEvery(self.config.vision.frame_interval_s)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SonicBridge:
        """Start the worker and return at once; progress arrives as StateChanged events.

        Raises ValueError, before anything is created, when the configuration cannot be sent to a worker
        (a setting that is not plain JSON data).
        """
        with self._rx:
            if self._closed:
                raise BridgeClosed("start() after close(): make a new SonicBridge")
            if self._started:
                raise RuntimeError("start() was already called")
            self._config_json()  # refuse an unsendable configuration before any resource exists
            self._python = self.config.python
            legacy = self._model.legacy_warning
            if legacy is not None:  # said once per bridge: in the host's log and as its first event
                log.warning("%s", legacy)
                self._local.append(ev.Warning(errors.LEGACY_MODEL, legacy))
            taken = self._pool.take(self.config) if self._pool is not None else None
            if taken is not None:
                self._adopt(taken)
                return self
            self._inbound = SharedRing.create(self.config.inbound_capacity, "sonic-bridge-in")
            self._outbound = SharedRing.create(self.config.outbound_capacity, "sonic-bridge-out")
            self._in_bell = Doorbell()
            self._out_bell = Doorbell()
            if self.config.vision.enabled:
                self._slot = FrameSlot.create(self.config.vision.max_frame_bytes)
            self._started = True
            self._spawn()
        return self

    def _adopt(self, taken: PooledWorker) -> None:
        """Take over a pre-started worker and its resources: it serves this session once it has its config."""
        self._inbound, self._outbound = taken.inbound, taken.outbound
        self._in_bell, self._out_bell = taken.in_bell, taken.out_bell
        self._slot = taken.slot
        self._worker = taken.worker
        self._worker.started = time.monotonic()  # the start-up timeout counts from here
        self._started = True
        self._set_state(ev.BridgeState.STARTING)
        self._stats.worker_pid = self._worker.pid
        if self._worker.hello is not None:
            self._stats.worker_version, self._stats.worker_python = self._worker.hello.version, \
                self._worker.hello.python
        with self._tx:
            sent = self._inbound.try_write(handshake.encode_config(self._config_json()))
        if not sent:
            self._fail(errors.WORKER_START_FAILED, "could not hand the configuration to the pre-started worker")
            return
        self._in_bell.ring()

    def _config_json(self) -> bytes:
        config = self.config.with_history(tuple(self._history))
        if self._user_spoke and config.session.greeting is not None:  # a restart greets only who never spoke
            config = dataclasses.replace(config, session=dataclasses.replace(config.session, greeting=None))
        try:
            return config.dumps().encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(
                f"the bridge configuration cannot be sent to the worker: {exc} (every setting, tool "
                "input_schema and history entry must be plain JSON data: dicts, lists, strings, finite numbers)"
            ) from None

    def _spawn(self) -> None:
        assert self._inbound and self._outbound and self._in_bell and self._out_bell
        self._set_state(ev.BridgeState.STARTING)
        self._outbound.beat()  # the heartbeat clock starts now, not at the last worker's death
        self._outbound.set_status(handshake.LAUNCHED)  # no producer is alive: the new worker's status starts here
        slot = self._slot.fd if self._slot is not None else None
        try:
            config_json = self._config_json()
            if self._group is not None:
                self._worker = self._group.attach(config_json, self._inbound, self._in_bell, self._outbound,
                                                  self._out_bell, slot)
            else:
                self._worker = _Worker(self._python, self.config, config_json, self._inbound, self._in_bell,
                                       self._outbound, self._out_bell, video_slot=slot)
        except GroupClosed as exc:
            self._worker = None
            self._fail(errors.WORKER_START_FAILED, f"could not start the session: {exc}")
            return
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._worker = None
            where = "in a shared worker of its group" if self._group is not None else "the worker"
            self._fail(errors.WORKER_START_FAILED, f"could not start {where} with {self._python}: {exc}")
            return
        self._stall_reported = False
        self._stats.worker_pid = self._worker.pid

    def close(self, timeout: float = 2.0) -> None:
        """Close the session in the service's order; the worker is killed if it takes longer than timeout.

        Safe from any thread and idempotent: a second call (even a concurrent one) returns at once.
        """
        with self._rx:
            if self._closed or self._closing:
                return
            self._closing = True
            worker = self._worker
            asked = False
            if worker is not None and worker.exit_code() is None:
                self._set_state(ev.BridgeState.CLOSING)
                with self._tx:
                    asked = self._write(codec.encode(msg.CloseIn()))
        deadline = time.monotonic() + max(0.0, timeout)
        while asked and worker is not None and worker.exit_code() is None and time.monotonic() < deadline:
            with self._rx:
                self._drain_into_local()
            time.sleep(0.01)
        with self._rx:
            self._drain_into_local()
            self._shutdown()

    def _fail(self, code: str, message: str) -> None:
        """A terminal error: report it once, then shut down."""
        error = ev.Error(code, message, recoverable=False)
        self._local.append(error)
        log.error("%s", message)
        self._close_reason = error
        self._shutdown()

    def _shutdown(self) -> None:
        """Kill (by pid) and reap the worker, release every fd and mapping. Idempotent. Caller holds _rx."""
        with self._tx:  # no producer is inside a ring while it is unmapped
            self._closed = True
        if self._worker is not None:
            self._worker.kill()
            self._worker.release()
            self._worker = None
        with self._tx:
            for resource in (self._inbound, self._outbound, self._in_bell, self._out_bell):
                if resource is not None:
                    resource.close()
            self._inbound = self._outbound = None
            self._in_bell = self._out_bell = None
        with self._vx:  # no push_video is inside the slot while it is unmapped
            if self._slot is not None:
                self._slot.close()
                self._slot = None
        if self._state is not ev.BridgeState.CLOSED:
            self._set_state(ev.BridgeState.CLOSED)

    def __enter__(self) -> SonicBridge:
        if not self._started:
            self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_worker", None) is not None:
            with contextlib.suppress(Exception):
                self._shutdown()

    # ------------------------------------------------------------------ host -> worker
    def push_audio(self, samples: Any, sample_rate: int) -> bool:
        """Queue one frame of user audio (int16/float32 [N], [1, N], [N, 1], or PCM16 bytes). Any thread.

        True: the frame is in the worker's ring; it reaches the service or is reported as a counted drop
        (``stats().worker_frames_dropped``). False: not queued, because the worker is not keeping up
        (counted, reported once by the next poll) or the bridge is closed (counted, silent). Bad input
        raises ValueError/TypeError and queues nothing; calling before start() raises RuntimeError.
        """
        if self._closed or not self._started:
            return self._refused("push_audio")
        if type(samples) is np.ndarray and type(sample_rate) is int and sample_rate in _RATES:
            # The common frame: checked, encoded and written in one compiled call (ring.try_write_audio),
            # byte for byte what the path below writes; anything it does not take goes that way.
            with self._tx:
                inbound = self._inbound
                if inbound is not None and inbound.compiled and not self._closed:
                    written = inbound.try_write_audio(samples, sample_rate, self._seq,
                                                      int(MAX_FRAME_SECONDS * sample_rate))
                    if written:
                        self._seq += 1
                        self._stats.frames_in += 1
                        self._stats.bytes_in += samples.nbytes
                        return True
                    if written is not None:  # the ring is full now: counted, reported by the next poll
                        self._stats.frames_dropped_in += 1
                        self._unreported_drops += 1
                        return False
        pcm, fmt = _frame_bytes(samples, sample_rate)
        with self._tx:
            if self._closed:
                self._stats.dropped_after_close += 1
                return False
            if not self._write(codec.encode(msg.AudioIn(pcm, sample_rate, fmt, self._seq)), ring=False):
                return False
            self._seq += 1
            self._stats.frames_in += 1
            self._stats.bytes_in += len(pcm)
            return True

    def send_text(self, text: str) -> bool:
        """Interactive text that makes the model answer (Nova 2 and later). Any thread; returns as push_audio."""
        if self._closed or not self._started:
            return self._refused("send_text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("send_text needs a non-empty string")
        if not self._model.supports_text_input:
            raise ValueError(f"{self._model.model_id} does not respond to text; use a Nova 2 model or send audio")
        with self._tx:
            sent = self._write(codec.encode(msg.TextIn(text)))
            self._user_spoke = self._user_spoke or sent
            return sent

    def send_tool_result(self, tool_use_id: str, content: str | dict[str, Any] | list[Any]) -> bool:
        """Answer a ToolCall. Every call must be answered exactly once (even with an error). Any thread.

        Raises ValueError for an id that is not waiting (unknown or already answered) or content that is
        not JSON; False when not queued (ring full: answer again; or the bridge is closed).
        """
        if self._closed or not self._started:
            return self._refused("send_tool_result")
        text = tool_result_text(content)
        with self._tx:
            if tool_use_id not in self._pending_tools:
                raise ValueError(f"no tool call {tool_use_id!r} is waiting for a result (unknown or already answered)")
            if not self._write(codec.encode(msg.ToolResultIn(tool_use_id, text))):
                return False
            del self._pending_tools[tool_use_id]
            self._history.append(Message(ev.Role.ASSISTANT, tool_result_line(tool_use_id, text)))
            return True

    def push_video(self, frame: Any, *, pixel_format: str = "rgb24", timestamp: float | None = None) -> bool:
        """Offer one camera frame (uint8 [H, W, 3] or [1, H, W, 3], ``rgb24`` or ``bgr24``). Any thread.

        Costs microseconds for a frame the sampler does not keep (one per ``vision.frame_interval_s`` is
        kept): no copy, no encoding, no ring traffic. A kept frame is copied once into the shared-memory
        frame slot, replacing the previous one; the worker takes it from there when it samples, and the host
        never waits for it. ``timestamp`` is the capture time on ``time.monotonic()``'s clock (default: now).

        True: kept. False: not kept (counted in ``stats().video_frames_dropped``), or the bridge is closed
        (counted in ``dropped_after_close``). Bad input raises ValueError/TypeError, and so does a bridge
        without ``vision.enabled``; calling before start() raises RuntimeError.
        """
        if self._closed or not self._started:
            return self._refused("push_video")
        vision = self.config.vision
        if not vision.enabled:
            raise ValueError("push_video needs vision: BridgeConfig(vision=VisionSettings(enabled=True))")
        if pixel_format not in VIDEO_FORMATS:
            raise ValueError(f"pixel_format must be one of {VIDEO_FORMATS}, got {pixel_format!r}")
        pixels = frame_pixels(frame, vision.max_frame_bytes)
        if timestamp is None:
            captured = time.monotonic()
        elif isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be a time.monotonic() reading in seconds, got {timestamp!r}")
        else:
            captured = float(timestamp)
        with self._vx:
            slot = self._slot
            if self._closed or slot is None:
                self._stats.dropped_after_close += 1
                return False
            self._stats.video_frames_in += 1
            if not self._keep.keep(captured):
                self._stats.video_frames_dropped += 1
                return False
            slot.write(pixels, pixel_format, int(captured * 1e9))
            self._stats.video_frames_kept += 1
            return True

    def update_session(
        self,
        *,
        voice: str | _Keep = KEEP,
        system_prompt: str | _Keep = KEEP,
        turn_sensitivity: str | _Keep | None = KEEP,
        tools: tuple[Tool, ...] | list[Tool] | _Keep = KEEP,
        tool_choice: str | _Keep = KEEP,
        inference: Inference | _Keep = KEEP,
    ) -> bool:
        """Change settings during the conversation. Any thread; not for the 20 ms path (it validates: ~1 ms).

        The settings are checked here exactly as at start (ValueError naming the setting, and nothing changes);
        the worker applies them by a renewal at the next turn boundary (history kept, no user audio lost) and
        says when with ``StateChanged(READY, events.SETTINGS_UPDATED)``. A restarted worker starts with them.
        True: sent. False: not sent and nothing changed (the ring is full: try again; or the bridge is closed).
        """
        if self._closed or not self._started:
            return self._refused("update_session")
        asked = {"voice": voice, "system_prompt": system_prompt, "turn_sensitivity": turn_sensitivity,
                 "tools": tools, "tool_choice": tool_choice, "inference": inference}
        changes: dict[str, Any] = {name: value for name, value in asked.items() if value is not KEEP}
        if not changes:
            raise ValueError(f"update_session needs at least one of {sorted(asked)}")
        with self._ux:  # one update at a time, each built on the one before
            session = dataclasses.replace(self.config.session, **changes)  # SessionSettings' own checks
            config = dataclasses.replace(self.config, session=session)  # and those that span settings
            record = codec.encode(msg.SettingsIn(dataclasses.replace(session, history=()).dumps()))
            with self._tx:
                if self._closed:
                    self._stats.dropped_after_close += 1
                    return False
                if not self._write(record):
                    return False
                self.config = config  # what a restarted worker starts with
            return True

    def _refused(self, what: str) -> bool:
        if not self._started:
            raise RuntimeError(f"{what}() before start()")
        self._stats.dropped_after_close += 1
        return False

    def _write(self, data: bytes, *, ring: bool = True) -> bool:
        """One record into the inbound ring, and its doorbell unless ``ring`` is False (audio: the worker reads
        it on its 40 ms tick, so the host saves a syscall per frame). Caller holds _tx."""
        inbound, bell = self._inbound, self._in_bell
        if inbound is None or bell is None or self._closed:
            self._stats.dropped_after_close += 1
            return False
        if len(data) > inbound.max_message():
            raise ValueError(
                f"message of {len(data)} bytes is larger than the inbound ring takes ({inbound.max_message()} "
                f"bytes, half its capacity of {inbound.capacity}); raise inbound_capacity or send less at once"
            )
        if not inbound.try_write(data):
            self._stats.frames_dropped_in += 1
            self._unreported_drops += 1
            return False
        if ring:
            bell.ring()
        return True

    # ------------------------------------------------------------------ worker -> host
    def poll(self, max_messages: int = MAX_MESSAGES_PER_POLL) -> list[ev.Event]:
        """Everything that happened since the last poll. Never waits. Any thread (polls are serialised)."""
        return [event for event, _ in self.poll_timed(max_messages)]

    def poll_timed(self, max_messages: int = MAX_MESSAGES_PER_POLL) -> list[tuple[ev.Event, int]]:
        """Like poll(), with the time (``time.monotonic_ns()``) each event left the worker or was made here."""
        with self._rx:
            ring, worker = self._outbound, self._worker
            # The common poll finds nothing: nothing held here, an empty ring, no drop to report, a serving worker
            # that beat moments ago (its death would show in the heartbeat within _fresh_ns). A drop counted by
            # another thread during this check is reported by the next poll.
            if (not self._local and not self._closed and ring is not None and worker is not None and worker.serving
                    and not self._limited and not self._unreported_drops and not ring.pending_bytes()
                    and time.monotonic_ns() - ring.heartbeat_ns() < self._fresh_ns):
                return []
            if self._closed and not self._local:
                return []
            if self._started and not self._closed:
                self._check_worker()
            self._drain_into_local(max_messages)
            with self._tx:
                drops, self._unreported_drops = self._unreported_drops, 0
            if drops:
                self._local.append(
                    ev.Warning(
                        errors.HOST_RING_FULL, "the worker is not keeping up: frames were dropped before reaching it",
                        drops,
                    )
                )
            self._sync_stamps()
            out = list(zip(self._local, self._stamps, strict=True))
            self._local, self._stamps = [], []
            return out

    def _sync_stamps(self) -> None:
        """Events made on the host side carry the time they were made."""
        missing = len(self._local) - len(self._stamps)
        if missing > 0:
            self._stamps.extend([time.monotonic_ns()] * missing)

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until poll() has something; True if it has, False on timeout.

        Raises BridgeClosed once the bridge is closed and poll() has returned its last events, so a host
        loop built on wait() ends instead of spinning.
        """
        outbound = self._outbound
        if self._local or self._unreported_drops or (outbound is not None and not outbound.closed
                                                    and outbound.pending_bytes()):
            return True
        bell = self._out_bell
        if self._closed or bell is None:
            raise BridgeClosed("the bridge is closed" + (f": {self._close_reason.message}"
                                                         if self._close_reason else ""))
        try:
            readable, _, _ = select.select([bell.fd], [], [], max(0.0, timeout))
            if readable:
                bell.drain()
        except (OSError, ValueError):  # closed by another thread meanwhile
            return bool(self._local)
        worker = self._worker
        if worker is not None and worker.exit_code() is not None:
            return True
        outbound = self._outbound
        return bool(self._local) or bool(outbound is not None and not outbound.closed and outbound.pending_bytes())

    def _drain_into_local(self, limit: int = MAX_MESSAGES_PER_POLL) -> None:
        ring = self._outbound
        if ring is None:
            return
        self._sync_stamps()
        batch: list[tuple[ev.Event, int]] = []
        for _ in range(limit):
            item = ring.read()
            if item is None:
                break
            data, stamp = item
            worker = self._worker
            if worker is not None and worker.hello is None:
                if not self._introduce(worker, data):
                    return
                continue
            self._latency.append(time.monotonic_ns() - stamp)
            try:
                value = codec.decode(data)
            except codec.CodecError as exc:
                log.error("unreadable message from the worker: %s", exc)
                continue
            if isinstance(value, msg.LogLine):
                name = value.logger.removeprefix("sonic_bridge.")
                logging.getLogger(f"sonic_bridge.worker.{name}").log(value.level, "%s", value.message)
            elif isinstance(value, msg.AudioAccounted):
                self._stats.worker_frames_sent = value.sent
                self._stats.worker_frames_dropped = value.dropped
                self._stats.worker_drop_reason = value.reason
            elif isinstance(value, ev.Event):
                batch.append((value, stamp))
        for event, stamp in self._observe(batch):
            self._local.append(event)
            self._stamps.append(stamp)

    def _introduce(self, worker: _Worker | GroupSession, data: bytes) -> bool:
        """The worker's first record: its version. False (and the bridge closed) when they differ."""
        hello = handshake.parse_hello(data)
        problem = handshake.mismatch(hello, __version__, worker.python)
        if problem is not None:
            self._sync_stamps()
            self._fail(errors.VERSION_MISMATCH, problem)
            return False
        assert hello is not None
        worker.hello = hello
        self._stats.worker_version = hello.version
        self._stats.worker_python = hello.python
        return True

    def _observe(self, batch: list[tuple[ev.Event, int]]) -> list[tuple[ev.Event, int]]:
        """Track state, tools and history; drop audio of interrupted responses (stale, never to be played)."""
        stale = {e.response_id for e, _ in batch if isinstance(e, ev.Interrupted)}
        for rid in stale:
            self._interrupted[rid] = None
            while len(self._interrupted) > 64:
                self._interrupted.popitem(last=False)
        out: list[tuple[ev.Event, int]] = []
        for event, stamp in batch:
            if isinstance(event, ev.AudioOut):
                if event.response_id in self._interrupted:
                    self._stats.audio_dropped_interrupted += 1
                    continue
                self._stats.audio_frames_out += 1
                self._stats.bytes_out += len(event.pcm)
            elif isinstance(event, ev.StateChanged):
                if event.state is self._state and not event.detail:
                    continue  # the host already announced it (e.g. closing)
                self._state = event.state
            elif isinstance(event, ev.ToolCall):
                with self._tx:
                    self._pending_tools[event.tool_use_id] = event.name
                    self._history.append(Message(ev.Role.ASSISTANT, tool_call_line(event.name, event.arguments)))
            elif isinstance(event, ev.Transcript) and event.stage is ev.Stage.FINAL:
                with self._tx:
                    self._history.append(Message(event.role, event.text))
                    self._user_spoke = self._user_spoke or event.role is ev.Role.USER
            elif isinstance(event, ev.Look):  # the worker answered it: a restarted worker replays it too
                with self._tx:
                    self._history.append(Message(ev.Role.ASSISTANT, tool_call_line(
                        self.config.vision.tool_name, {"question": event.question})))
                    self._history.append(Message(ev.Role.ASSISTANT, tool_result_line(
                        event.tool_use_id, event.answer or f"camera unavailable: {event.error}")))
            elif isinstance(event, ev.Error) and not event.recoverable:
                self._close_reason = event
            self._stats.messages_out += 1
            out.append((event, stamp))
        return out

    def _check_worker(self) -> None:
        worker = self._worker
        if worker is None:
            return
        if self._limited and self._supervise(worker):
            return  # over a limit: replaced (or the bridge gave up)
        ring = self._outbound
        if worker.serving and ring is not None and (time.monotonic_ns() - ring.heartbeat_ns()) < self._fresh_ns:
            return  # it beat moments ago: alive, no waitpid needed (deaths show within _fresh_ns of the last beat)
        code = worker.exit_code()
        if code is None:
            self._check_liveness(worker)
            return
        self._drain_into_local()
        if self._closed:
            return  # the drain found a version mismatch and closed the bridge
        if self._state is ev.BridgeState.CLOSED or self._closing:
            self._shutdown()  # the worker ended the session itself (a terminal error was reported)
            return
        tail = worker.stderr_tail()
        if worker.hello is None and code >= 0:
            self._fail(*_start_failure(worker.python, code, tail))
            return
        why = (
            f"the worker (pid {worker.pid}, {worker.python}) exited with code {code}"
            if code >= 0
            else f"the worker (pid {worker.pid}) was killed by signal {-code}"
        )
        if tail:
            why += f"; its last output: {tail[-400:]}"
        self._replace_worker(worker, errors.WORKER_DIED, why)

    def _replace_worker(self, worker: _Worker | GroupSession, code: str, why: str) -> None:
        """End a worker that died or went over a limit; start another with the conversation, or give up."""
        worker.kill()
        worker.release()
        self._worker = None
        if self._restarts < self.config.max_restarts:
            self._restarts += 1
            self._local.append(
                ev.Error(code, why + f"; restarting ({self._restarts} of {self.config.max_restarts})", recoverable=True)
            )
            log.warning("%s; restarting", why)
            self._respawn()
        else:
            self._fail(errors.RESTART_LIMIT if self.config.max_restarts else code, why)

    def _respawn(self) -> None:
        """A new worker with the conversation so far. A spoken turn the old one never answered (the history
        ends with the user's words) is asked again, as the session manager does after a reconnect."""
        with self._tx:
            last = self._history[-1] if self._history else None
            reask = last if last is not None and last.role is ev.Role.USER and self._model.supports_text_input \
                else None
            if reask is not None:
                self._history.pop()  # the new worker hears it as the turn asked again, not as history
        try:
            self._spawn()
        finally:
            if reask is not None:
                with self._tx:
                    self._history.append(reask)
        if reask is not None and self._worker is not None:
            with self._tx:
                self._write(codec.encode(msg.TextIn(reask.text)))

    def _supervisor_for(self, worker: _Worker | GroupSession) -> Supervisor:
        sup = self._supervisor
        if sup is None or sup.pid != worker.pid:
            c = self.config
            sup = self._supervisor = Supervisor(worker.pid, memory_mb=c.max_worker_memory_mb, cpu=c.max_worker_cpu,
                                                cpu_window=c.worker_cpu_window)
            self._supervised_serving = False
        return sup

    def _supervise(self, worker: _Worker | GroupSession) -> bool:
        """Memory and CPU limits (at most one /proc read a second); True when the worker was replaced."""
        sup = self._supervisor_for(worker)
        if not worker.serving:
            return False
        if not self._supervised_serving:
            self._supervised_serving = True
            sup.restart_cpu_window()
        why = sup.check(time.monotonic())
        if why is None:
            return False
        self._drain_into_local()
        if self._closed or self._worker is not worker:
            return True
        self._replace_worker(worker, errors.WORKER_OVER_LIMIT, why)
        return True

    def _check_liveness(self, worker: _Worker | GroupSession) -> None:
        """While the worker starts, only the start-up timeout applies (imports are slow on a busy machine);
        once it serves, a heartbeat older than stall_timeout is a stall."""
        ring = self._outbound
        if ring is None:
            return
        if not worker.serving:
            step = ring.status() if worker.hello is not None else handshake.LAUNCHED
            if step >= handshake.SERVING:
                worker.serving = True  # from its first heartbeat on, a stall is a stall
            elif time.monotonic() - worker.started > self.config.startup_timeout:
                doing = handshake.STEP_NAMES.get(step, f"start-up step {step}")
                self._fail(
                    errors.WORKER_START_TIMEOUT,
                    f"the worker (pid {worker.pid}, {worker.python}) did not finish starting within "
                    f"{self.config.startup_timeout:g} s; it was {doing} (startup_timeout sets the limit)",
                )
                return
            else:
                return
        age = (time.monotonic_ns() - ring.heartbeat_ns()) / 1e9
        if age < self.config.stall_timeout:
            self._stall_reported = False
            return
        if age > self.config.kill_stalled_after:
            log.error("worker pid %d stalled for %.1f s: killing it", worker.pid, age)
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
            return
        if not self._stall_reported:
            self._stall_reported = True
            self._local.append(
                ev.Error(
                    errors.WORKER_STALLED,
                    f"the worker (pid {worker.pid}) has not answered for {age:.1f} s",
                    recoverable=True,
                )
            )

    def _set_state(self, state: ev.BridgeState) -> None:
        self._state = state
        self._local.append(ev.StateChanged(state))

    # ------------------------------------------------------------------ introspection
    @property
    def state(self) -> ev.BridgeState:
        return self._state

    @property
    def closed(self) -> bool:
        """True once the bridge is closed, by close() or by a terminal error (see close_reason)."""
        return self._closed

    @property
    def close_reason(self) -> ev.Error | None:
        """The terminal error that closed the bridge, or None (still open, or closed by the host)."""
        return self._close_reason

    @property
    def worker_pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker else None

    @property
    def history(self) -> list[Message]:
        """The conversation so far, as a restarted worker replays it."""
        with self._tx:
            return list(self._history)

    def stats(self) -> BridgeStats:
        with self._rx:
            s = self._stats
            s.state = self._state
            s.worker_pid = self.worker_pid
            s.restarts = self._restarts
            s.inbound_high_water = self._inbound.high_water if self._inbound else s.inbound_high_water
            s.outbound_pending = self._outbound.pending_bytes() if self._outbound else 0
            worker = self._worker
            if worker is not None:
                sup = self._supervisor_for(worker)
                sup.sample(time.monotonic())  # a no-op unless a second has passed
                s.worker_rss_bytes, s.worker_cpu_seconds = sup.rss_bytes, sup.cpu_seconds
                s.worker_cpu_percent = sup.cpu_percent
            if self._latency:
                values = np.array(self._latency, dtype=np.float64) / 1000.0
                p50, p99 = np.percentile(values, [50, 99])
                s.latency_us = {"p50": float(p50), "p99": float(p99), "max": float(np.max(values)),
                                "n": float(len(values))}
            return s


def start_pooled_worker(template: BridgeConfig, template_json: bytes) -> PooledWorker:
    """Launch one pre-started worker with fresh resources sized by the pool's template."""
    inbound = SharedRing.create(template.inbound_capacity, "sonic-bridge-in")
    outbound = SharedRing.create(template.outbound_capacity, "sonic-bridge-out")
    in_bell, out_bell = Doorbell(), Doorbell()
    slot = FrameSlot.create(template.vision.max_frame_bytes) if template.vision.enabled else None
    outbound.beat()
    try:
        worker = _Worker(template.python, template, template_json, inbound, in_bell, outbound, out_bell,
                         video_slot=slot.fd if slot is not None else None, pooled=True)
    except BaseException:
        for resource in (inbound, outbound, in_bell, out_bell, slot):
            if resource is not None:
                resource.close()
        raise
    return PooledWorker(worker, inbound, outbound, in_bell, out_bell, slot)


def _start_failure(python: str, code: int, tail: str) -> tuple[str, str]:
    """Why a worker that exited before introducing itself could not start, with the fix."""
    fix = (f"make a worker environment with `sonic-bridge worker-env` (bridges find it by default at "
           f"{launch.default_worker_env_dir()}) or set worker_python to a Python >= 3.12 with sonic-bridge "
           f"{__version__} installed")
    last = f"; its last output: {tail[-400:]}" if tail else "; it printed nothing"
    if "No module named" in tail:
        missing = next((line for line in reversed(tail.splitlines()) if "No module named" in line), "")
        return (errors.WORKER_ENVIRONMENT,
                f"the worker interpreter {python} cannot import what the worker needs ({missing.strip()}): {fix}")
    return (errors.WORKER_START_FAILED,
            f"the worker interpreter {python} exited with code {code} before it started (is it a Python >= 3.11 "
            f"with sonic-bridge?): {fix}{last}")


_NATIVE_F32 = np.dtype(np.float32)
_NATIVE_I16 = np.dtype(np.int16)
_LITTLE = np.little_endian
_sum: Any = np.add.reduce  # the ufunc itself: ndarray.sum() adds a Python-level wrapper to every call


def _frame_bytes(samples: Any, sample_rate: int) -> tuple[bytes, ev.SampleFormat]:
    """Validate one host frame and return its raw little-endian bytes and sample format.

    The common frame (a plain float32 or int16 array in the machine's byte order) takes two numpy calls:
    host calls run cold every 20 ms cycle, where each extra numpy call costs tens of microseconds.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate not in HOST_RATES:
        raise ValueError(f"sample_rate must be one of {HOST_RATES} Hz, got {sample_rate!r}")
    dtype = getattr(samples, "dtype", None)
    if type(samples) is np.ndarray and _LITTLE and (dtype is _NATIVE_F32 or dtype is _NATIVE_I16):
        shape = samples.shape
        if len(shape) == 1:
            count = shape[0]
        elif len(shape) == 2 and 1 in shape:
            count = shape[0] * shape[1]
        else:
            raise ValueError(f"audio must be mono, shaped [N], [1, N] or [N, 1]; got shape {shape}")
        fmt = ev.SampleFormat.FLOAT32 if dtype is _NATIVE_F32 else ev.SampleFormat.INT16
        # A NaN or an infinity makes the sum non-finite; a non-finite sum of finite values (overflow) is
        # told apart by the exact check, which then runs only for such rare frames.
        if fmt is ev.SampleFormat.FLOAT32 and count and not math.isfinite(_sum(samples, axis=None)) and not bool(
                np.isfinite(samples).all()):
            raise ValueError("audio contains NaN or infinite values")
        pcm = samples.tobytes()  # C order whatever the strides: one copy
    elif isinstance(samples, bytes | bytearray | memoryview):
        if isinstance(samples, memoryview) and (samples.itemsize != 1 or samples.ndim > 1):
            raise TypeError(
                f"a memoryview of audio must hold raw PCM16 bytes (format 'B'), got format {samples.format!r} "
                f"with shape {samples.shape}: pass the numpy array itself instead"
            )
        pcm = bytes(samples)
        if len(pcm) % 2:
            raise ValueError(f"PCM16 bytes must have an even length, got {len(pcm)}")
        fmt = ev.SampleFormat.INT16
        count = len(pcm) // 2
    elif isinstance(samples, np.ndarray):
        array = np.asarray(samples)  # a subclass (np.matrix) would keep two dimensions through reshape
        if array.ndim == 2 and 1 in array.shape:
            array = array.reshape(-1)
        elif array.ndim != 1:
            raise ValueError(f"audio must be mono, shaped [N], [1, N] or [N, 1]; got shape {samples.shape}")
        kind, width = array.dtype.kind, array.dtype.itemsize
        if kind == "i" and width == 2:
            fmt = ev.SampleFormat.INT16
        elif kind == "f" and width == 4:
            fmt = ev.SampleFormat.FLOAT32
            if not np.isfinite(array).all():
                raise ValueError("audio contains NaN or infinite values")
        else:
            raise TypeError(f"audio must be int16 or float32, got {array.dtype}")
        pcm = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        count = array.size
    else:
        raise TypeError(f"audio must be a numpy array or PCM16 bytes, got {type(samples).__name__}")
    if count == 0:
        raise ValueError("audio frame is empty")
    if count > MAX_FRAME_SECONDS * sample_rate:
        raise ValueError(f"audio frame of {count} samples is longer than {MAX_FRAME_SECONDS:.0f} s at {sample_rate} Hz")
    return pcm, fmt


__all__ = ["BridgeClosed", "BridgeStats", "SonicBridge", "WorkerGroup", "WorkerPool"]
