"""`sonic-bridge bench`: runs every suite, writes results.json, PNG plots and a Markdown summary."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count(),
            "python": sys.version.split()[0]}


def run(out: Path, quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    from sonic_bridge.bench import bridge, engines, host_calls, scale, startup, transports, vision

    out.mkdir(parents=True, exist_ok=True)
    paced, burst, rtt, tries = (60, 3000, 300, 3) if quick else (750, 20000, 2000, 20)
    results: dict[str, Any] = {"machine": machine(), "quick": quick,
                               "command": "sonic-bridge bench" + (" --quick" if quick else "")}
    progress("1/4 transports")
    results["transports"] = [transports.measure(n, size, paced, burst, rtt)
                             for size in (640, 3840) for n in transports.NAMES]
    results["crash"] = [transports.crash_test(n, tries) for n in transports.NAMES]
    progress("2/4 bridge overhead")
    results["overhead"] = bridge.overhead(turns=1 if quick else 5)
    results["host_calls"] = host_calls.measure(5000 if quick else 50000)
    results["host_paths"] = host_calls.paths(2000 if quick else 20000, 100 if quick else 1000)
    results["startup"] = startup.measure(1 if quick else 10, reply_too=not quick)
    progress("3/4 worker cost")
    results["worker_cost"] = bridge.worker_cost(seconds=3 if quick else 20)
    progress("4/4 scale")
    results["scale"] = bridge.scale([1, 2] if quick else [1, 8, 16, 32, 64], seconds=2 if quick else 10)
    progress("scale through the SDK: bridges against the in-process integration")
    results["scale_sdk"] = scale.measure([2] if quick else [1, 4, 8, 16, 32, 64], seconds=2 if quick else 10)
    progress("vision: push_video and the worker's encoding")
    results["vision"] = vision.measure(quick)
    progress("engines: the demo's conversation on Nova Sonic and on the cascade")
    results["engines"] = engines.measure(quick)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plots(results, out)
    (out / "summary.md").write_text(summary(results))
    return results


def plots(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["transports"] if r["size"] == 640]
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [r["transport"] for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["write_us"]["p50"] for r in rows], 0.4, label="host write p50")
    ax.bar([i + 0.2 for i in x], [r["one_way_us"]["p50"] for r in rows], 0.4, label="paced one-way p50")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("µs")
    ax.set_title("Transports, 640-byte frames every 20 ms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "transports.png", dpi=110)
    plt.close(fig)
    rows = results["scale"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["bridges"] for r in rows], [r["cpu_percent_total"] for r in rows], "o-", label="total CPU %")
    ax2 = ax.twinx()
    ax2.plot([r["bridges"] for r in rows], [r["dropped_frames"] for r in rows], "s--", color="C3",
             label="dropped frames")
    ax.set_xlabel("concurrent bridges")
    ax.set_ylabel("CPU % (of one core)")
    ax2.set_ylabel("dropped frames")
    ax.set_title("Scale at real-time pace")
    fig.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=110)
    plt.close(fig)


def _f(v: float, digits: int = 1) -> str:
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def summary(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"# sonic-bridge benchmarks ({'quick' if r['quick'] else 'full'} run)", "",
             f"Machine: {m['cpu']} ({m['cores']} cores), {m['platform']}, Python {m['python']}. "
             f"Reproduce: `{r['command']}`. Medians and percentiles of one run.", "",
             "## Transports (host write cost, paced one-way latency at 20 ms, round trip, throughput, CPU)", "",
             "| transport | size | write p50/p99/max µs | one-way p50/p99 µs | RTT p50 µs | msgs/s | CPU host/peer % |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for t in r["transports"]:
        w, o = t["write_us"], t["one_way_us"]
        lines.append(f"| {t['transport']} | {t['size']} | {_f(w['p50'])} / {_f(w['p99'])} / {_f(w['max'], 0)} | "
                     f"{_f(o['p50'])} / {_f(o['p99'])} | {_f(t['rtt_us']['p50'])} | {t['throughput_msgs_s']:,.0f} | "
                     f"{_f(t['cpu_percent']['host'], 2)} / {_f(t['cpu_percent']['peer'], 2)} |")
    lines += ["", "Crash test (peer SIGKILLed mid-traffic, host's next write+read timed, guard 3 s): " +
              "; ".join(f"{c['transport']}: {c['verdict']}" for c in r["crash"]), "",
              "## Bridge overhead (same fake-Sonic conversation, 20 ms host cycle)", "",
              "| integration | busy host | host call p50/p99/max µs | cycle lateness p99 ms "
              "| end of speech -> audio ms |",
              "|---|:---:|---:|---:|---:|"]
    for o in r["overhead"]:
        c, late = o["host_call_us"], o["cycle_lateness_ms"]
        lines.append(f"| {o['integration']} | {'yes' if o['busy_host'] else 'no'} | {_f(c['p50'])} / {_f(c['p99'])} / "
                     f"{_f(c['max'], 0)} | {_f(late['p99'], 2)} | {_f(o['speech_end_to_first_audio_ms']['p50'], 0)} |")
    if "host_calls" in r:
        h = r["host_calls"]
        lines += ["", "Warm host calls, back to back (loopback worker): push_audio p50/p99 "
                  f"{_f(h['warm_push_us']['p50'], 2)} / {_f(h['warm_push_us']['p99'], 2)} µs, of which the producer "
                  f"lock (thread safety, uncontended) {_f(h['uncontended_lock_us']['p50'], 2)} µs p50; two threads "
                  f"pushing at once: {_f(h['two_threads_push_us']['p50'], 2)} / "
                  f"{_f(h['two_threads_push_us']['p99'], 2)} µs."]
    if "host_paths" in r:
        lines += ["", "Host calls on the compiled hot path and on its pure-Python twin (loopback worker; cold: one "
                  "call after each 20 ms sleep, as a real host makes it):", "",
                  "| path | warm push p50/p99 µs | cold push p50/p99 µs | cold empty poll p50/p99 µs "
                  "| cold push+poll p50/p99 µs |", "|---|---:|---:|---:|---:|"]
        for h in r["host_paths"]:
            lines.append(f"| {h['path']} | {_f(h['warm_push_us']['p50'], 2)} / {_f(h['warm_push_us']['p99'], 2)} | "
                         f"{_f(h['cold_push_us']['p50'])} / {_f(h['cold_push_us']['p99'])} | "
                         f"{_f(h['cold_poll_us']['p50'])} / {_f(h['cold_poll_us']['p99'])} | "
                         f"{_f(h['cold_cycle_us']['p50'])} / {_f(h['cold_cycle_us']['p99'])} |")
    if "startup" in r:
        lines += ["", "## Start-up (start() -> READY, and -> first reply audio of a 0.5 s utterance spoken at READY)",
                  "", "| door | start | to READY p50 / max ms | to first reply p50 / max ms | runs |",
                  "|---|---|---:|---:|---:|"]
        lines += [f"| {u['door']} | {u['start']} | {_f(u['start_to_ready']['p50_ms'], 0)} / "
                  f"{_f(u['start_to_ready']['max_ms'], 0)} | {_f(u['start_to_first_reply']['p50_ms'], 0)} / "
                  f"{_f(u['start_to_first_reply']['max_ms'], 0)} | {u['start_to_ready']['n']:.0f} |"
                  for u in r["startup"]]
    lines += ["", "## Worker cost (one worker, real-time audio through the real SDK)", "",
              "| door | CPU % of a core | RSS MB |", "|---|---:|---:|"]
    lines += [f"| {w['door']} | {_f(w['cpu_percent_of_core'])} | {_f(w['rss_mb'], 0)} |" for w in r["worker_cost"]]
    lines += ["", "## Scale (bridges at real-time pace, one host thread)", "",
              "| bridges | dropped frames | worker->host p99 µs (incl. wait for the cycle) | cycle lateness p99 ms "
              "| total CPU % | RSS MB |",
              "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['bridges']} | {s['dropped_frames']} | {_f(s['worker_to_host_p99_us'], 0)} | "
              f"{_f(s['host_cycle_lateness_p99_ms'], 2)} | {_f(s['cpu_percent_total'])} | {_f(s['rss_mb_total'], 0)} |"
              for s in r["scale"]]
    if "scale_sdk" in r:
        from sonic_bridge.bench.scale import summary as scale_summary

        lines += scale_summary(r["scale_sdk"])
    if "vision" in r:
        from sonic_bridge.bench.vision import summary as vision_summary

        lines += vision_summary(r["vision"])
    if "engines" in r:
        from sonic_bridge.bench.engines import summary as engines_summary

        lines += engines_summary(r["engines"])
    lines += ["", "## Against the goals", ""] + goals(r)
    return "\n".join(lines) + "\n"


def goals(r: dict[str, Any]) -> list[str]:
    ring = [t for t in r["transports"] if t["transport"] == "ring"]
    others = [t for t in r["transports"] if t["transport"] in ("faster_fifo", "mp_queue")]
    bridge = [o for o in r["overhead"] if o["integration"] == "sonic_bridge" and not o["busy_host"]]
    # Clean: no frame dropped and the host still makes its 20 ms cycle (lateness p99 under one cycle).
    clean = [s["bridges"] for s in r["scale"] if s["dropped_frames"] == 0 and s["host_cycle_lateness_p99_ms"] < 20]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    write_p99 = max(t["write_us"]["p99"] for t in ring)
    write_max = max(t["write_us"]["max"] for t in ring)
    one_way = max(t["one_way_us"]["p50"] for t in ring)
    ahead = all(t["one_way_us"]["p50"] <= o["one_way_us"]["p50"] and t["write_us"]["p50"] <= o["write_us"]["p50"]
                for t in ring for o in others if o["size"] == t["size"])
    late = max(o["cycle_lateness_ms"]["p99"] for o in bridge) if bridge else float("nan")
    cpu = max(w["cpu_percent_of_core"] for w in r["worker_cost"])
    host_goals = []
    if r.get("host_paths"):
        best = r["host_paths"][0]
        cycle, warm = best["cold_cycle_us"], best["warm_push_us"]
        in_process = [o for o in r["overhead"] if o["integration"] == "in_process" and not o["busy_host"]]
        ours = bridge[0]["host_call_us"]["p50"] if bridge else float("nan")
        theirs = in_process[0]["host_call_us"]["p50"] if in_process else float("nan")
        host_goals = [
            f"- host time per cycle (push + poll, cold, {best['path']} path) <= 60 µs p50 / 120 µs p99: "
            f"{_f(cycle['p50'])} / {_f(cycle['p99'])} µs, {verdict(cycle['p50'] <= 60 and cycle['p99'] <= 120)}",
            f"- warm push <= 5 µs p50: {_f(warm['p50'], 2)} µs, {verdict(warm['p50'] <= 5)}",
            f"- host call per cycle <= the in-process integration's (same conversation, p50): {_f(ours)} vs "
            f"{_f(theirs)} µs, {verdict(ours <= theirs)}",
        ]
    return host_goals + sdk_goals(r) + [
        f"- host write p99 <= 10 µs: {_f(write_p99)} µs, {verdict(write_p99 <= 10)}; max <= 250 µs: "
        f"{_f(write_max, 0)} µs, {verdict(write_max <= 250)} (paced: the first call of each 20 ms cycle runs cold)",
        f"- paced one-way p50 <= 100 µs: {_f(one_way)} µs, {verdict(one_way <= 100)}",
        f"- ahead of faster-fifo and multiprocessing.Queue on host write and latency: {verdict(ahead)}",
        f"- host cycle unaffected (lateness p99 < 1 ms): {_f(late, 2)} ms, {verdict(late < 1)}",
        f"- worker CPU <= 3% of a core while streaming: {_f(cpu)}%, {verdict(cpu <= 3)}",
        f"- >= 32 concurrent sessions without a dropped frame (and the host cycle kept): up to "
        f"{max(clean, default=0)} clean, "
        f"{verdict(max(clean, default=0) >= 32)}",
    ]


def sdk_goals(r: dict[str, Any]) -> list[str]:
    """Issue 12's goals that the SDK scale, worker cost and start-up suites measure."""
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = []
    rows = r.get("scale_sdk") or []
    by = {(x["integration"], x["sessions"]): x for x in rows}
    counts = sorted({x["sessions"] for x in rows})
    variants = sorted({x["integration"] for x in rows if x["integration"].startswith("bridges_sdk")})
    for variant in variants:
        what = "one worker per session" if variant == "bridges_sdk" else \
            f"shared workers, {variant.rsplit('_', 1)[1]} sessions each"
        ratios, lateness, work = [], [], []
        for n in counts:
            ours, theirs = by.get((variant, n)), by.get(("in_process_sdk", n))
            if ours is None or theirs is None:
                continue
            ratios.append(f"{n}: {ours['cpu_percent_total'] / max(theirs['cpu_percent_total'], 1e-9):.2f}x")
            lateness.append(ours["cycle_lateness_ms"]["p99"] <= theirs["cycle_lateness_ms"]["p99"])
            work.append(ours["host_work_ms"]["p99"] <= theirs["host_work_ms"]["p99"])
        if not ratios:
            continue
        cpu_ok = all(float(x.split(": ")[1][:-1]) <= 1.2 for x in ratios)
        out.append(f"- ({what}) total CPU per session <= 1.2x the in-process integration's (bridges / in process at "
                   f"N = {', '.join(ratios)}): {verdict(cpu_ok)}")
        out.append(f"- ({what}) host cycle lateness p99 and own work p99 no worse than in process: lateness at "
                   f"{sum(lateness)}/{len(lateness)} counts, own work at {sum(work)}/{len(work)}: "
                   f"{verdict(all(lateness) and all(work))}")
        top = by.get((variant, counts[-1]))
        if top is not None:
            ok = counts[-1] >= 64 and top["dropped_frames"] == 0 and top["cycle_lateness_ms"]["p99"] < 5
            out.append(f"- ({what}) >= 64 sessions through the SDK, no dropped frame, lateness p99 < 5 ms: "
                       f"{counts[-1]} sessions, {top['dropped_frames']} dropped, lateness p99 "
                       f"{_f(top['cycle_lateness_ms']['p99'], 2)} ms: {verdict(ok)}")
            cpu = top.get("worker_cpu_percent_per_session", float("nan"))
            out.append(f"- ({what}) worker CPU <= 2% of a core per session through the SDK, at {counts[-1]} "
                       f"sessions: {_f(cpu, 2)}%, {verdict(cpu <= 2)}")
        first, last = by.get((variant, counts[0])), top
        if first is not None and last is not None and counts[-1] > counts[0]:
            per = (last["uss_mb_total"] - first["uss_mb_total"]) / (counts[-1] - counts[0])
            out.append(f"- ({what}) memory per session <= 15 MB beyond the first (unique memory): {_f(per)} MB, "
                       f"{verdict(per <= 15)}")
    if r.get("worker_cost"):
        cpu = max(w["cpu_percent_of_core"] for w in r["worker_cost"])
        out.append(f"- (one worker per session) worker CPU <= 2% of a core for one session through the SDK "
                   f"(worker cost suite): {_f(cpu)}%, {verdict(cpu <= 2)}")
    for u in r.get("startup") or []:
        limit = 500 if u["start"] == "cold" else 100
        ready = u["start_to_ready"]["p50_ms"]
        out.append(f"- start -> READY <= {limit} ms ({u['start']}, {u['door']}): {_f(ready, 0)} ms p50, "
                   f"{verdict(ready <= limit)}")
    return out
