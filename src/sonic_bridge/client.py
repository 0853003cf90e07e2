"""``SonicBridge``: the host's synchronous facade. No call blocks, whatever the worker is doing.

Every call on the cycle path (push_audio, send_text, send_tool_result, poll, stats) touches only
shared memory, one eventfd write and ``waitpid(WNOHANG)``; none waits on the worker. Only ``wait``
(by design) and ``close`` (bounded by its timeout) may sleep.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

import numpy as np

from sonic_bridge import codec, errors
from sonic_bridge import events as ev
from sonic_bridge import messages as msg
from sonic_bridge.config import HOST_RATES, BridgeConfig
from sonic_bridge.history import Message, tool_call_line, tool_result_line
from sonic_bridge.protocol import tool_result_text
from sonic_bridge.ring import Doorbell, SharedRing

log = logging.getLogger("sonic_bridge.client")
worker_log = logging.getLogger("sonic_bridge.worker")

MAX_FRAME_SECONDS = 10.0
MAX_MESSAGES_PER_POLL = 4096
LATENCY_SAMPLES = 2048


class BridgeClosed(RuntimeError):
    """The bridge was closed (by the host, or because the worker could not be kept alive)."""


@dataclass
class BridgeStats:
    state: ev.BridgeState
    worker_pid: int | None
    restarts: int
    frames_in: int = 0
    bytes_in: int = 0
    frames_dropped_in: int = 0
    messages_out: int = 0
    audio_frames_out: int = 0
    bytes_out: int = 0
    audio_dropped_interrupted: int = 0
    worker_frames_sent: int = 0
    worker_frames_dropped: int = 0
    worker_drop_reason: str = ""
    inbound_high_water: int = 0
    outbound_pending: int = 0
    latency_us: dict[str, float] = field(default_factory=dict)


class _Worker:
    """One worker process and the shared resources it was started with."""

    def __init__(
        self, config: BridgeConfig, inbound: SharedRing, in_bell: Doorbell, outbound: SharedRing, out_bell: Doorbell
    ) -> None:
        life_r, self.life_w = os.pipe()
        config_fd = os.memfd_create("sonic-bridge-config", os.MFD_CLOEXEC)
        os.write(config_fd, config.dumps().encode())
        self.stderr: IO[bytes] = tempfile.TemporaryFile(prefix="sonic-bridge-worker-")
        fds = [inbound.fd, in_bell.fd, outbound.fd, out_bell.fd, life_r, config_fd]
        args = [
            config.python,
            "-m",
            "sonic_bridge.worker",
            "--in-ring",
            str(inbound.fd),
            "--in-bell",
            str(in_bell.fd),
            "--out-ring",
            str(outbound.fd),
            "--out-bell",
            str(out_bell.fd),
            "--life",
            str(life_r),
            "--config",
            str(config_fd),
        ]
        env = dict(os.environ)
        src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self.proc = subprocess.Popen(
                args,
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=self.stderr,
                stderr=self.stderr,
                env=env,
                start_new_session=True,
            )
        except OSError:
            os.close(self.life_w)
            self.stderr.close()
            raise
        finally:
            os.close(life_r)
            os.close(config_fd)
        self.pid = self.proc.pid
        self.started = time.monotonic()

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()

    def stderr_tail(self, limit: int = 1500) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - limit))
            return self.stderr.read().decode(errors="replace").strip()
        return ""

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.life_w)
        self.stderr.close()


class SonicBridge:
    """A Nova Sonic session in a worker process, driven from a synchronous host.

    >>> with SonicBridge(BridgeConfig()) as bridge:       # doctest: +SKIP
    ...     bridge.push_audio(frame, 16000)
    ...     for event in bridge.poll(): ...
    """

    def __init__(self, config: BridgeConfig | None = None) -> None:
        self.config = config if config is not None else BridgeConfig()
        if not isinstance(self.config, BridgeConfig):
            raise TypeError(f"SonicBridge takes a BridgeConfig, got {type(self.config).__name__}")
        self._model = self.config.session.model
        self._inbound: SharedRing | None = None
        self._outbound: SharedRing | None = None
        self._in_bell: Doorbell | None = None
        self._out_bell: Doorbell | None = None
        self._worker: _Worker | None = None
        self._state = ev.BridgeState.CLOSED
        self._started = False
        self._closed = False
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

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SonicBridge:
        """Start the worker and return at once; progress arrives as StateChanged events."""
        if self._closed:
            raise BridgeClosed("start() after close(): make a new SonicBridge")
        if self._started:
            raise RuntimeError("start() was already called")
        self._started = True
        self._inbound = SharedRing.create(self.config.inbound_capacity, "sonic-bridge-in")
        self._outbound = SharedRing.create(self.config.outbound_capacity, "sonic-bridge-out")
        self._in_bell = Doorbell()
        self._out_bell = Doorbell()
        self._spawn()
        return self

    def _spawn(self) -> None:
        assert self._inbound and self._outbound and self._in_bell and self._out_bell
        self._set_state(ev.BridgeState.STARTING)
        config = self.config.with_history(tuple(self._history))
        self._outbound.beat()  # the heartbeat clock starts now, not at the last worker's death
        try:
            self._worker = _Worker(config, self._inbound, self._in_bell, self._outbound, self._out_bell)
        except OSError as exc:
            self._worker = None
            self._local.append(
                ev.Error(errors.WORKER_START_FAILED, f"could not start the worker with {config.python}: {exc}", False)
            )
            self._shutdown()
            return
        self._stall_reported = False

    def close(self, timeout: float = 2.0) -> None:
        """Close the session in the service's order; the worker is killed if it takes longer than timeout."""
        if self._closed:
            return
        self._closed = True
        worker = self._worker
        if worker is not None and worker.exit_code() is None and self._inbound is not None:
            self._set_state(ev.BridgeState.CLOSING)
            if self._inbound.try_write(codec.encode(msg.CloseIn())) and self._in_bell is not None:
                self._in_bell.ring()
            deadline = time.monotonic() + timeout
            while worker.exit_code() is None and time.monotonic() < deadline:
                self._drain_into_local()
                time.sleep(0.01)
            self._drain_into_local()
        self._shutdown()

    def _shutdown(self) -> None:
        """Kill (by pid) and reap the worker, release every fd and mapping. Idempotent."""
        self._closed = True
        if self._worker is not None:
            self._worker.kill()
            self._worker.release()
            self._worker = None
        for resource in (self._inbound, self._outbound, self._in_bell, self._out_bell):
            if resource is not None:
                resource.close()
        self._inbound = self._outbound = None
        self._in_bell = self._out_bell = None
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
        """Queue one frame of user audio (int16/float32 [N], [1, N], [N, 1], or PCM16 bytes).

        Returns False when the frame was dropped because the worker is not keeping up (counted, and
        reported once by the next poll). Bad input raises ValueError/TypeError and queues nothing.
        """
        self._require_running("push_audio")
        pcm, fmt = _frame_bytes(samples, sample_rate)
        return self._send(codec.encode(msg.AudioIn(pcm, sample_rate, fmt, self._seq)), audio=len(pcm))

    def send_text(self, text: str) -> bool:
        """Interactive text that makes the model answer (Nova 2 and later)."""
        self._require_running("send_text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("send_text needs a non-empty string")
        if not self._model.supports_text_input:
            raise ValueError(f"{self._model.model_id} does not respond to text; use a Nova 2 model or send audio")
        return self._send(codec.encode(msg.TextIn(text)), audio=0)

    def send_tool_result(self, tool_use_id: str, content: str | dict[str, Any] | list[Any]) -> bool:
        """Answer a ToolCall. Every call must be answered exactly once (even with an error)."""
        self._require_running("send_tool_result")
        if tool_use_id not in self._pending_tools:
            raise ValueError(f"no tool call {tool_use_id!r} is waiting for a result (unknown or already answered)")
        text = tool_result_text(content)
        if not self._send(codec.encode(msg.ToolResultIn(tool_use_id, text)), audio=0):
            return False
        del self._pending_tools[tool_use_id]
        self._history.append(Message(ev.Role.ASSISTANT, tool_result_line(tool_use_id, text)))
        return True

    def _send(self, data: bytes, *, audio: int) -> bool:
        ring = self._inbound
        assert ring is not None and self._in_bell is not None
        if len(data) > ring.max_message():
            raise ValueError(f"message of {len(data)} bytes is larger than the inbound ring ({ring.capacity} bytes)")
        if not ring.try_write(data):
            self._stats.frames_dropped_in += 1
            self._unreported_drops += 1
            return False
        self._in_bell.ring()
        if audio:
            self._seq += 1
            self._stats.frames_in += 1
            self._stats.bytes_in += audio
        return True

    def _require_running(self, what: str) -> None:
        if self._closed:
            raise BridgeClosed(f"{what}() after close()")
        if not self._started:
            raise RuntimeError(f"{what}() before start()")

    # ------------------------------------------------------------------ worker -> host
    def poll(self, max_messages: int = MAX_MESSAGES_PER_POLL) -> list[ev.Event]:
        """Everything that happened since the last poll. Never waits."""
        return [event for event, _ in self.poll_timed(max_messages)]

    def poll_timed(self, max_messages: int = MAX_MESSAGES_PER_POLL) -> list[tuple[ev.Event, int]]:
        """Like poll(), with the time (``time.monotonic_ns()``) each event left the worker or was made here."""
        if self._started and not self._closed:
            self._check_worker()
        self._drain_into_local(max_messages)
        if self._unreported_drops:
            self._local.append(
                ev.Warning(
                    errors.HOST_RING_FULL,
                    "the worker is not keeping up: frames were dropped before reaching it",
                    self._unreported_drops,
                )
            )
            self._unreported_drops = 0
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
        """Block up to ``timeout`` seconds until poll() has something; True if it has."""
        if self._local or self._unreported_drops or (self._outbound and self._outbound.pending_bytes()):
            return True
        bell = self._out_bell
        if bell is None:
            return bool(self._local)
        readable, _, _ = select.select([bell.fd], [], [], max(0.0, timeout))
        if readable:
            bell.drain()
        if self._worker is not None and self._worker.exit_code() is not None:
            return True
        return bool(self._outbound and self._outbound.pending_bytes())

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
                self._pending_tools[event.tool_use_id] = event.name
                self._history.append(Message(ev.Role.ASSISTANT, tool_call_line(event.name, event.arguments)))
            elif isinstance(event, ev.Transcript) and event.stage is ev.Stage.FINAL:
                self._history.append(Message(event.role, event.text))
            self._stats.messages_out += 1
            out.append((event, stamp))
        return out

    def _check_worker(self) -> None:
        worker = self._worker
        if worker is None:
            return
        code = worker.exit_code()
        if code is None:
            self._check_stall(worker)
            return
        self._drain_into_local()
        if self._state is ev.BridgeState.CLOSED:
            self._shutdown()  # the worker ended the session itself (a terminal error was reported)
            return
        tail = worker.stderr_tail()
        why = (
            f"the worker (pid {worker.pid}) exited with code {code}"
            if code >= 0
            else f"the worker (pid {worker.pid}) was killed by signal {-code}"
        )
        if tail:
            why += f"; its last output: {tail[-400:]}"
        worker.kill()
        worker.release()
        self._worker = None
        if self._restarts < self.config.max_restarts:
            self._restarts += 1
            self._local.append(
                ev.Error(
                    errors.WORKER_DIED,
                    why + f"; restarting ({self._restarts} of {self.config.max_restarts})",
                    recoverable=True,
                )
            )
            log.warning("%s; restarting", why)
            self._spawn()
        else:
            code_name = errors.RESTART_LIMIT if self.config.max_restarts else errors.WORKER_DIED
            self._local.append(ev.Error(code_name, why, recoverable=False))
            log.error("%s; closing the bridge", why)
            self._shutdown()

    def _check_stall(self, worker: _Worker) -> None:
        ring = self._outbound
        if ring is None:
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
    def worker_pid(self) -> int | None:
        return self._worker.pid if self._worker else None

    @property
    def history(self) -> list[Message]:
        """The conversation so far, as a restarted worker replays it."""
        return list(self._history)

    def stats(self) -> BridgeStats:
        s = self._stats
        s.state = self._state
        s.worker_pid = self.worker_pid
        s.restarts = self._restarts
        s.inbound_high_water = self._inbound.high_water if self._inbound else s.inbound_high_water
        s.outbound_pending = self._outbound.pending_bytes() if self._outbound else 0
        if self._latency:
            values = np.array(self._latency, dtype=np.float64) / 1000.0
            p50, p99 = np.percentile(values, [50, 99])
            s.latency_us = {"p50": float(p50), "p99": float(p99), "max": float(np.max(values)), "n": float(len(values))}
        return s


def _frame_bytes(samples: Any, sample_rate: int) -> tuple[bytes, ev.SampleFormat]:
    """Validate one host frame and return its raw bytes and sample format (no conversion here)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate not in HOST_RATES:
        raise ValueError(f"sample_rate must be one of {HOST_RATES} Hz, got {sample_rate!r}")
    if isinstance(samples, bytes | bytearray | memoryview):
        pcm = bytes(samples)
        if len(pcm) % 2:
            raise ValueError(f"PCM16 bytes must have an even length, got {len(pcm)}")
        fmt = ev.SampleFormat.INT16
        count = len(pcm) // 2
    elif isinstance(samples, np.ndarray):
        array = samples
        if array.ndim == 2 and 1 in array.shape:
            array = array.reshape(-1)
        elif array.ndim != 1:
            raise ValueError(f"audio must be mono, shaped [N], [1, N] or [N, 1]; got shape {samples.shape}")
        if array.dtype == np.int16:
            fmt = ev.SampleFormat.INT16
        elif array.dtype == np.float32:
            fmt = ev.SampleFormat.FLOAT32
            if not np.isfinite(array).all():
                raise ValueError("audio contains NaN or infinite values")
        else:
            raise TypeError(f"audio must be int16 or float32, got {array.dtype}")
        pcm = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        count = array.shape[0]
    else:
        raise TypeError(f"audio must be a numpy array or PCM16 bytes, got {type(samples).__name__}")
    if count == 0:
        raise ValueError("audio frame is empty")
    if count > MAX_FRAME_SECONDS * sample_rate:
        raise ValueError(f"audio frame of {count} samples is longer than {MAX_FRAME_SECONDS:.0f} s at {sample_rate} Hz")
    return pcm, fmt


__all__ = ["BridgeClosed", "BridgeStats", "SonicBridge"]
