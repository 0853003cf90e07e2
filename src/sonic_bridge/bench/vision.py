"""Vision's costs: ``push_video`` on the host (640x480, 1280x720; warm and paced at 30 fps; a kept frame's
copy), the worker's encoding (downscale + JPEG) and the worker's memory while frames stream."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sonic_bridge.events import BridgeState
from sonic_bridge.host.client import SonicBridge
from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.vision.settings import VisionSettings

SIZES = ((640, 480), (1280, 720))


def _stats(values_ns: list[int]) -> dict[str, float]:
    us = np.array(values_ns, dtype=np.float64) / 1000
    if len(us) == 0:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0.0}
    p50, p99 = np.percentile(us, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(np.max(us)), "n": float(len(us))}


def _frame(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
    return np.clip(base + rng.integers(-20, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def push_cost(width: int, height: int, warm_calls: int, paced_seconds: float) -> dict[str, Any]:
    """One live bridge (fake Sonic, vision on at the default 1 s interval) takes frames as a camera host gives them."""
    config = BridgeConfig(vision=VisionSettings(enabled=True))
    frames = [_frame(width, height, s) for s in range(4)]
    warm: list[int] = []
    paced_dropped: list[int] = []
    paced_kept: list[int] = []
    with SonicBridge(config) as bridge:
        worker = bridge.worker_pid
        ready = time.monotonic() + 60
        while bridge.state is not BridgeState.READY and time.monotonic() < ready:
            bridge.poll()
            time.sleep(0.02)
        t = 1_000_000.0  # capture times of a camera: 30 fps, so the sampler keeps one frame in 30
        for i in range(warm_calls):
            started = time.perf_counter_ns()
            bridge.push_video(frames[i % 4], timestamp=t)
            warm.append(time.perf_counter_ns() - started)
            t += 1 / 30
        for _ in range(50):  # a second for the worker to take and encode what the warm calls kept
            bridge.poll()
            time.sleep(0.02)
        rss_start = _rss(worker)
        end = time.monotonic() + paced_seconds
        next_at = time.monotonic()
        i = 0
        while time.monotonic() < end:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 1 / 30
            started = time.perf_counter_ns()
            kept = bridge.push_video(frames[i % 4])
            took = time.perf_counter_ns() - started
            (paced_kept if kept else paced_dropped).append(took)
            i += 1
            if i % 15 == 0:
                bridge.poll()
        rss_end = _rss(worker)
        stats = bridge.stats()
    return {"size": f"{width}x{height}", "warm_us": _stats(warm), "paced_dropped_us": _stats(paced_dropped),
            "paced_kept_us": _stats(paced_kept), "paced_all_us": _stats(paced_dropped + paced_kept),
            "kept": stats.video_frames_kept, "pushed": stats.video_frames_in,
            "worker_rss_mb": {"start": rss_start, "end": rss_end}, "paced_seconds": paced_seconds}


def _rss(pid: int | None) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            line = next(x for x in status if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration, ValueError):
        return 0.0


def encode_cost(calls: int) -> list[dict[str, Any]]:
    """What the worker does with each kept frame: downscale to 640 px and JPEG (quality 80), in its thread."""
    from sonic_bridge.vision.encoder import encode_jpeg

    out = []
    for width, height in (*SIZES, (1920, 1080)):
        frame = _frame(width, height, 1)
        times: list[int] = []
        size = 0
        for _ in range(calls):
            started = time.perf_counter_ns()
            jpeg, w, h = encode_jpeg(frame, "bgr24", 640, 80)
            times.append(time.perf_counter_ns() - started)
            size = len(jpeg)
        out.append({"size": f"{width}x{height}", "sent_as": f"{w}x{h}", "jpeg_kb": size / 1024,
                    "encode_ms": {k: v / 1000 for k, v in _stats(times).items() if k != "n"}})
    return out


def measure(quick: bool) -> dict[str, Any]:
    return {"push_video": [push_cost(w, h, 2000 if quick else 20000, 5.0 if quick else 30.0) for w, h in SIZES],
            "encode": encode_cost(10 if quick else 100)}


def summary(v: dict[str, Any]) -> list[str]:
    def f(x: float, nd: int = 1) -> str:
        return f"{x:.{nd}f}"

    lines = ["", "## Vision (push_video on the host, encoding in the worker)", "",
             "| frame | warm p50/p99/max µs | paced 30 fps, dropped p50/p99/max µs | paced, kept (one copy) p50/max µs "
             "| all paced p50/p99/max µs | kept / pushed | worker RSS MB start -> end |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for p in v["push_video"]:
        w, d, k, a = p["warm_us"], p["paced_dropped_us"], p["paced_kept_us"], p["paced_all_us"]
        lines.append(f"| {p['size']} | {f(w['p50'], 2)} / {f(w['p99'])} / {f(w['max'], 0)} | {f(d['p50'])} / "
                     f"{f(d['p99'])} / {f(d['max'], 0)} | {f(k['p50'], 0)} / {f(k['max'], 0)} | {f(a['p50'])} / "
                     f"{f(a['p99'])} / {f(a['max'], 0)} | {p['kept']} / {p['pushed']} | "
                     f"{f(p['worker_rss_mb']['start'], 0)} -> {f(p['worker_rss_mb']['end'], 0)} |")
    lines += ["", "Worker encoding of a kept frame (Pillow: reduce/resize to 640 px, JPEG quality 80):", "",
              "| camera frame | sent as | JPEG KiB | encode p50/p99/max ms |", "|---|---|---:|---:|"]
    lines += [f"| {e['size']} | {e['sent_as']} | {f(e['jpeg_kb'], 0)} | {f(e['encode_ms']['p50'], 2)} / "
              f"{f(e['encode_ms']['p99'], 2)} / {f(e['encode_ms']['max'], 2)} |" for e in v["encode"]]
    return lines
