"""The two engines on the same fake conversation (the demo's): when each step of a turn reaches the host.

Nova Sonic (fake behind the real SDK) and the cascade (Transcribe -> Nova -> Polly fakes behind the real
clients), both in process, one after the other: end of speech -> final user transcript -> first reply text ->
first reply audio, as the host sees them.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

from sonic_bridge.cli.demo import TurnStats, default_script, run_demo
from sonic_bridge.host.config import BridgeConfig, FakeOptions

ENGINES = ("sonic", "cascade")
STEPS = ("final_transcript", "first_text", "first_audio")
RATE = 16000


def measure(quick: bool) -> list[dict[str, Any]]:
    script = default_script(RATE)
    if quick:
        script = script[:3]  # one turn
    rows = []
    for engine in ENGINES:
        config = BridgeConfig(engine=engine, fake=FakeOptions(via_sdk=True))
        with tempfile.TemporaryDirectory(prefix="sonic-bench-") as folder:
            result = run_demo(config, script, RATE, Path(folder))
        row: dict[str, Any] = {"engine": engine, "door": "sdk_in_process", "turns": len(result.turns),
                               "dropped_frames": result.dropped_frames}
        for step in STEPS:
            row[f"{step}_ms"] = _figures([_after(t, step) for t in result.turns])
        rows.append(row)
    return rows


def _after(turn: TurnStats, step: str) -> float | None:
    return turn.after_speech_ms(getattr(turn, step))


def _figures(values: list[float | None]) -> dict[str, float]:
    known = [v for v in values if v is not None]
    if not known:
        return {"p50": float("nan"), "max": float("nan"), "n": 0}
    return {"p50": statistics.median(known), "max": max(known), "n": len(known)}


def summary(rows: list[dict[str, Any]]) -> list[str]:
    def f(v: float) -> str:
        return "-" if math.isnan(v) else f"{v:.0f}"

    lines = ["", "## Engines (the demo's conversation; fakes behind the real SDK clients, in process)", "",
             "| engine | turns | end of speech -> final transcript p50 / max ms | -> first reply text p50 ms "
             "| -> first reply audio p50 / max ms | dropped frames |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ft, tx, au = r["final_transcript_ms"], r["first_text_ms"], r["first_audio_ms"]
        lines.append(f"| {r['engine']} | {r['turns']} | {f(ft['p50'])} / {f(ft['max'])} | {f(tx['p50'])} | "
                     f"{f(au['p50'])} / {f(au['max'])} | {r['dropped_frames']} |")
    lines += ["", "The fake services' own timings dominate: Sonic's end-of-turn pause (1.75 s at MEDIUM) against "
              "Transcribe's 0.8 s, then each one's thinking time; the figures compare the engines' paths, not "
              "the real services."]
    return lines
