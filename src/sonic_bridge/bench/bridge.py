"""Suites 2-4: bridge overhead against an in-process integration, worker cost, and scale."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

from sonic_bridge import events as ev
from sonic_bridge.cli.demo import synth_utterance
from sonic_bridge.engines.sonic.protocol import SonicSession, dumps
from sonic_bridge.fake.direct import FakeDirectBackend
from sonic_bridge.host.client import SonicBridge
from sonic_bridge.host.config import BridgeConfig, FakeOptions
from sonic_bridge.settings import SessionSettings
from sonic_bridge.worker.audio import Converter

RATE = 16000
FRAME = 320
SETTINGS = SessionSettings(turn_sensitivity="HIGH")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class _Busy:
    """A renderer-like thread that holds the GIL doing pure-Python work."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        x = 0
        while not self.stop.is_set():
            for i in range(20000):
                x ^= i * 7
        self.x = x

    def __enter__(self) -> _Busy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class LoopSession:
    """One session of an in-process integration, run on its owner's asyncio loop: a backend stream, the
    sans-IO session and the audio converters (what pipecat-style integrations keep per session)."""

    def __init__(self, open_backend: Callable[[], Any]) -> None:
        self.open_backend = open_backend
        self.session = SonicSession(SETTINGS)
        self.to_service = Converter(16000, ev.SampleFormat.INT16, quality="LQ")
        self.to_host = Converter(24000, ev.SampleFormat.FLOAT32)
        self.events: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()
        self.sent = 0  # frames handed to the stream

    async def open(self) -> None:
        self.backend = self.open_backend()
        self.stream = await self.backend.open(SETTINGS)
        for event in self.session.start():
            await self.stream.send(dumps(event))
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed under it at the end
            while (raw := await self.stream.receive()) is not None:
                for event in self.session.receive(raw):
                    if isinstance(event, ev.AudioOut):
                        pcm = self.to_host.convert(event.pcm, event.sample_rate, event.sample_format)
                        self.events.put(ev.AudioOut(pcm, 24000, ev.SampleFormat.FLOAT32, event.response_id))
                    else:
                        self.events.put(event)

    async def send(self, frame: np.ndarray) -> None:
        pcm = self.to_service.convert(frame.tobytes(), RATE, ev.SampleFormat.FLOAT32)
        if pcm:
            for event in self.session.audio(pcm):
                await self.stream.send(dumps(event))
        self.sent += 1

    def poll(self) -> list[ev.Event]:
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.events.get_nowait())
        return out

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.stream.aclose()
        self.reader.cancel()
        with contextlib.suppress(Exception):
            await self.backend.aclose()


class InProcessIntegration:
    """How pipecat-style integrations do it: an asyncio loop thread inside the host process holding the
    sessions (one here: the direct fake; bench.scale holds N through the SDK)."""

    def __init__(self, count: int = 1, open_backend: Callable[[], Any] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sessions = [LoopSession(open_backend or (lambda: FakeDirectBackend(FakeOptions())))
                         for _ in range(count)]
        self.pushed = 0
        asyncio.run_coroutine_threadsafe(self._open_all(), self.loop).result(60 + count)

    async def _open_all(self) -> None:
        await asyncio.gather(*(s.open() for s in self.sessions))

    def push_audio(self, frame: np.ndarray, rate: int, index: int = 0) -> None:
        asyncio.run_coroutine_threadsafe(self.sessions[index].send(frame), self.loop)
        self.pushed += 1

    def poll(self, index: int = 0) -> list[ev.Event]:
        return self.sessions[index].poll()

    def dropped(self) -> int:
        """Frames pushed that never reached their stream."""
        return self.pushed - sum(s.sent for s in self.sessions)

    def close(self) -> None:
        async def stop() -> None:
            await asyncio.gather(*(s.aclose() for s in self.sessions))
            # Sends still queued when the loop could not keep up (counted by dropped()): ended, not left pending.
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def conversation(host: Any, turns: int) -> dict[str, Any]:
    """A 20 ms host loop: speak, pause, wait for the reply; per-call cost, cycle lateness, reply latency."""
    script: list[tuple[np.ndarray, bool]] = []
    for k in range(turns):
        speech = synth_utterance(0.8, RATE, seed=k)
        audio = np.concatenate([speech, np.zeros(int(2.6 * RATE), np.float32)])
        script += [(audio[i : i + FRAME], i + FRAME == len(speech)) for i in range(0, len(audio), FRAME)]
    calls: list[float] = []
    late: list[float] = []
    replies: list[float] = []
    speech_end: float | None = None
    start = time.monotonic()
    for n, (frame, ends_speech) in enumerate(script):
        due = start + n * 0.02
        time.sleep(max(0.0, due - time.monotonic()))
        late.append((time.monotonic() - due) * 1000)
        t0 = time.perf_counter_ns()
        host.push_audio(frame, RATE)
        events = host.poll()
        calls.append((time.perf_counter_ns() - t0) / 1000)
        if ends_speech:
            speech_end = time.monotonic()
        if speech_end is not None and any(isinstance(e, ev.AudioOut) for e in events):
            replies.append((time.monotonic() - speech_end) * 1000)
            speech_end = None
    return {"host_call_us": {"p50": _pct(calls, 50), "p99": _pct(calls, 99), "max": max(calls)},
            "cycle_lateness_ms": {"p50": _pct(late, 50), "p99": _pct(late, 99), "max": max(late)},
            "speech_end_to_first_audio_ms": {"p50": _pct(replies, 50), "n": len(replies)}}


def overhead(turns: int) -> list[dict[str, Any]]:
    results = []
    for busy in (False, True):
        for name in ("in_process", "sonic_bridge"):
            if name == "in_process":
                host: Any = InProcessIntegration()
            else:
                host = SonicBridge(BridgeConfig(session=SETTINGS)).start()
                while host.state is not ev.BridgeState.READY:
                    host.poll()
                    time.sleep(0.02)
            try:
                with _Busy() if busy else contextlib.nullcontext():
                    figures = conversation(host, turns)
            finally:
                host.close()
            results.append({"integration": name, "busy_host": busy, **figures})
    return results


def worker_cost(seconds: float) -> list[dict[str, Any]]:
    """CPU and RSS of one worker streaming real-time audio through the real SDK."""
    from sonic_bridge.fake.server import FakeSonicServer  # noqa: F401 - fails early without the fake extra

    results = []
    with fake_credentials():
        for door in SDK_DOORS:
            with contextlib.ExitStack() as stack:
                results.append({"door": door, **_stream_and_sample(door_config(door, stack), seconds)})
    return results


SDK_DOORS = ("sdk_in_process", "sdk_tls_server")


@contextlib.contextmanager
def fake_credentials() -> Any:
    """Credentials for the fakes (they check signatures, not accounts), restored afterwards."""
    env_backup = dict(os.environ)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "secret")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(env_backup)


def door_config(door: str, stack: contextlib.ExitStack) -> BridgeConfig:
    """The fake Sonic through the real SDK: in process, or over TLS (a fake server the stack ends)."""
    if door == "sdk_in_process":
        return BridgeConfig(session=SETTINGS, fake=FakeOptions(via_sdk=True))
    url, ca = stack.enter_context(_server())
    return BridgeConfig(session=SETTINGS, backend="aws", endpoint=url, ca_file=ca)


@contextlib.contextmanager
def _server() -> Any:
    import signal
    import subprocess
    import sys

    folder_handle = tempfile.TemporaryDirectory(prefix="sonic-bench-")
    folder = folder_handle.name
    proc = subprocess.Popen([sys.executable, "-m", "sonic_bridge.cli", "fake-server", "--port", "0", "--cert-dir",
                             folder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        ca = proc.stdout.readline().split()[1]
        yield url, ca
    finally:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        folder_handle.cleanup()


def _stream_and_sample(config: BridgeConfig, seconds: float) -> dict[str, Any]:
    with SonicBridge(config) as bridge:
        while bridge.state is not ev.BridgeState.READY:
            bridge.poll()
            time.sleep(0.02)
        worker = psutil.Process(bridge.worker_pid)
        speech = synth_utterance(seconds, RATE, seed=1)
        cpu0, t0 = worker.cpu_times(), time.monotonic()
        for n in range(0, len(speech) - FRAME + 1, FRAME):
            time.sleep(max(0.0, t0 + n / RATE - time.monotonic()))
            bridge.push_audio(speech[n : n + FRAME], RATE)
            bridge.poll()
        cpu1, t1 = worker.cpu_times(), time.monotonic()
        rss = worker.memory_info().rss
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"cpu_percent_of_core": 100 * used / (t1 - t0), "rss_mb": rss / 2**20, "seconds": t1 - t0}


def scale(counts: list[int], seconds: float) -> list[dict[str, Any]]:
    """N bridges driven from one host thread at real-time pace: drops, latency, CPU, memory."""
    results = []
    for n in counts:
        bridges = [SonicBridge(BridgeConfig(session=SETTINGS)).start() for _ in range(n)]
        try:
            deadline = time.monotonic() + 30 + n
            while any(b.state is not ev.BridgeState.READY for b in bridges) and time.monotonic() < deadline:
                for b in bridges:
                    b.poll()
                time.sleep(0.02)
            procs = [psutil.Process(b.worker_pid) for b in bridges if b.worker_pid]
            host = psutil.Process()
            cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in procs) + host.cpu_times().user
            speech = np.concatenate([synth_utterance(0.8, RATE, seed=2), np.zeros(int(1.8 * RATE), np.float32)])
            late: list[float] = []
            transit: list[float] = []  # worker send -> host poll, for events inside the window only
            start = time.monotonic()
            cycles = int(seconds / 0.02)
            for c in range(cycles):
                due = start + c * 0.02
                time.sleep(max(0.0, due - time.monotonic()))
                late.append((time.monotonic() - due) * 1000)
                i = (c * FRAME) % (len(speech) - FRAME)
                for b in bridges:
                    b.push_audio(speech[i : i + FRAME], RATE)
                    now = time.monotonic_ns()
                    transit += [(now - stamp) / 1000 for _, stamp in b.poll_timed()]
            span = time.monotonic() - start
            time.sleep(1.5)  # let the workers report their frame accounts
            for b in bridges:
                b.poll()
            cpu1 = sum(p.cpu_times().user + p.cpu_times().system for p in procs) + host.cpu_times().user
            stats = [b.stats() for b in bridges]
            results.append({
                "bridges": n,
                "dropped_frames": sum(s.frames_dropped_in + s.worker_frames_dropped for s in stats),
                "frames_pushed": sum(s.frames_in for s in stats),
                "worker_to_host_p99_us": _pct(transit, 99),
                "host_cycle_lateness_p99_ms": _pct(late, 99),
                "cpu_percent_total": 100 * (cpu1 - cpu0) / span,
                "rss_mb_total": sum(p.memory_info().rss for p in procs) / 2**20,
            })
        finally:
            for b in bridges:
                b.close(timeout=2.0)
    return results


