"""Scale through the real SDK: N sessions as N bridges, with one worker each and sharded (a WorkerGroup of
``PER_WORKER`` sessions per process), against the in-process integration (one asyncio thread inside the host
holding N SDK streams, as pipecat-style integrations do), all on the fake Sonic behind the unmodified SDK (its
in-process transport), driven from one host thread at real-time pace. Per N: the host's own work per cycle,
its cycle lateness, total CPU (host and workers) and the workers' share, memory, and frames dropped.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import numpy as np
import psutil

from sonic_bridge import events as ev
from sonic_bridge.bench.bridge import FRAME, RATE, SETTINGS, InProcessIntegration, _pct, fake_credentials
from sonic_bridge.cli.demo import synth_utterance
from sonic_bridge.host.client import SonicBridge
from sonic_bridge.host.config import BridgeConfig, FakeOptions
from sonic_bridge.host.group import WorkerGroup

PER_WORKER = 8  # sessions per shared worker process (the WorkerGroup default)


def _sdk_backend() -> Any:
    """What each in-process session talks to: the fake Sonic behind the unmodified SDK."""
    from sonic_bridge.engines.sonic.backends.aws import AwsBackend
    from sonic_bridge.fake.sdk_transport import fake_sdk_transport

    config = BridgeConfig(session=SETTINGS, fake=FakeOptions(via_sdk=True))
    return AwsBackend(config, transport_factory=lambda: fake_sdk_transport(config.fake))


def _drive(push: Any, poll: Any, n: int, seconds: float) -> dict[str, Any]:
    """The host loop: every 20 ms one frame into each session and one poll of each."""
    speech = np.concatenate([synth_utterance(0.8, RATE, seed=2), np.zeros(int(1.8 * RATE), np.float32)])
    late: list[float] = []
    work: list[float] = []
    start = time.monotonic()
    for c in range(int(seconds / 0.02)):
        due = start + c * 0.02
        time.sleep(max(0.0, due - time.monotonic()))
        late.append((time.monotonic() - due) * 1000)
        i = (c * FRAME) % (len(speech) - FRAME)
        t0 = time.perf_counter()
        for k in range(n):
            push(k, speech[i : i + FRAME])
            poll(k)
        work.append((time.perf_counter() - t0) * 1000)
    return {"span": time.monotonic() - start, "lateness_ms": late, "work_ms": work}


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _uss(p: psutil.Process) -> int:
    """Memory only this process holds (its unique pages), which is what one more session costs."""
    try:
        return int(p.memory_full_info().uss)
    except psutil.Error:
        return 0


def _row(integration: str, n: int, driven: dict[str, Any], cpu: float, rss: float, uss: float,
         dropped: int, worker_cpu: float = float("nan"), processes: int = 0) -> dict[str, Any]:
    return {"integration": integration, "sessions": n, "dropped_frames": dropped, "uss_mb_total": uss / 2**20,
            "worker_processes": processes, "worker_cpu_percent_per_session": 100 * worker_cpu / driven["span"] / n,
            "host_work_ms": {"p50": _pct(driven["work_ms"], 50), "p99": _pct(driven["work_ms"], 99)},
            "cycle_lateness_ms": {"p50": _pct(driven["lateness_ms"], 50), "p99": _pct(driven["lateness_ms"], 99)},
            "cpu_percent_total": 100 * cpu / driven["span"], "rss_mb_total": rss / 2**20}


def in_process(n: int, seconds: float) -> dict[str, Any]:
    host = psutil.Process()
    rss0, uss0 = host.memory_info().rss, _uss(host)
    sessions = InProcessIntegration(n, _sdk_backend)
    try:
        cpu0 = _cpu([host])
        driven = _drive(lambda k, frame: sessions.push_audio(frame, RATE, k), sessions.poll, n, seconds)
        cpu = _cpu([host]) - cpu0
        time.sleep(0.5)  # the loop sends what was pushed last
        rss, uss = host.memory_info().rss - rss0, _uss(host) - uss0
        dropped = sessions.dropped()
    finally:
        sessions.close()
    return _row("in_process_sdk", n, driven, cpu, rss, uss, dropped)


def bridges(n: int, seconds: float, per_worker: int | None = None) -> dict[str, Any]:
    """N bridges, each with a worker of its own, or (``per_worker``) sharing a WorkerGroup's processes."""
    config = BridgeConfig(session=SETTINGS, fake=FakeOptions(via_sdk=True))
    with contextlib.ExitStack() as stack:
        group = stack.enter_context(WorkerGroup(config, per_worker)) if per_worker else None
        opened = [SonicBridge(config, group=group).start() for _ in range(n)]
        try:
            deadline = time.monotonic() + 60 + 2 * n
            while any(b.state is not ev.BridgeState.READY for b in opened) and time.monotonic() < deadline:
                for b in opened:
                    b.poll()
                time.sleep(0.02)
            # A group's processes include its warm spare: it is part of what sharding costs.
            pids = group.pids if group is not None else sorted({b.worker_pid for b in opened if b.worker_pid})
            workers = [psutil.Process(pid) for pid in pids]
            host = psutil.Process()
            cpu0, host0 = _cpu([host] + workers), _cpu([host])
            driven = _drive(lambda k, frame: opened[k].push_audio(frame, RATE), lambda k: opened[k].poll(), n,
                            seconds)
            cpu, worker_cpu = _cpu([host] + workers) - cpu0, _cpu(workers) - (cpu0 - host0)
            time.sleep(1.5)  # the workers report their frame accounts
            for b in opened:
                b.poll()
            stats = [b.stats() for b in opened]
            rss = sum(p.memory_info().rss for p in workers)
            uss = sum(_uss(p) for p in workers)
            dropped = sum(s.frames_dropped_in + s.worker_frames_dropped for s in stats)
            dropped += sum(max(0, s.frames_in - s.worker_frames_sent - s.worker_frames_dropped) for s in stats)
        finally:
            for b in opened:
                b.close(timeout=2.0)
    name = f"bridges_sdk_shared_{per_worker}" if per_worker else "bridges_sdk"
    return _row(name, n, driven, cpu, rss, uss, dropped, worker_cpu, len(workers))


def measure(counts: list[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    with fake_credentials():
        for n in counts:
            rows.append(in_process(n, seconds))
            rows.append(bridges(n, seconds))
            rows.append(bridges(n, seconds, PER_WORKER))
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    def f(v: float, digits: int = 1) -> str:
        return "-" if math.isnan(v) else f"{v:.{digits}f}"

    def mb(v: float) -> str:
        return "-" if math.isnan(v) or v < 0 else f"{v:.0f}"  # below zero: the host freed more than it grew

    lines = ["", "## Scale through the SDK (N sessions, one host thread at real-time pace; fake Sonic behind the "
             "real SDK)", "",
             "| sessions | integration | worker processes | dropped frames | host work per cycle p50/p99 ms "
             "| cycle lateness p99 ms | total CPU % | CPU % per session | worker CPU % per session | RSS MB total "
             "| unique MB total |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        w = r["host_work_ms"]
        lines.append(f"| {r['sessions']} | {r['integration']} | {r.get('worker_processes', 0) or '-'} | "
                     f"{r['dropped_frames']} | {f(w['p50'], 2)} / "
                     f"{f(w['p99'], 2)} | {f(r['cycle_lateness_ms']['p99'], 2)} | {f(r['cpu_percent_total'])} | "
                     f"{f(r['cpu_percent_total'] / r['sessions'], 2)} | "
                     f"{f(r.get('worker_cpu_percent_per_session', float('nan')), 2)} | {mb(r['rss_mb_total'])} | "
                     f"{mb(r['uss_mb_total'])} |")
    lines += ["", f"bridges_sdk: one worker process per session; bridges_sdk_shared_{PER_WORKER}: a WorkerGroup, "
              f"{PER_WORKER} sessions per worker process. Worker CPU per session: the worker processes' CPU over the "
              "sessions (in process there is no worker: '-').",
              "Dropped frames: for bridges, frames refused or dropped and reported; in process, frames still "
              "queued on the integration's loop at the end (it fell behind).",
              "In process, memory counts what the sessions added to the host (at 1 session: the SDK's imports "
              "too; '-': it did not grow); for bridges, the workers' (RSS counts shared pages in each worker; unique "
              "memory does not)."]
    return lines
