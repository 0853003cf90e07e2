"""The demo: a simulated avatar host (20 ms cycles, real time) holds a conversation through the bridge.

The default script speaks three turns and barges in on the second reply. The host measures, per turn,
the time from the end of the user's speech to the first reply audio it receives, and the bridge's own
share of that (the time the first reply audio spent between leaving the worker and reaching the host).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from sonic_bridge import events as ev
from sonic_bridge.host.client import SonicBridge
from sonic_bridge.host.config import HOST_RATES, BridgeConfig

log = logging.getLogger("sonic_bridge.demo")
CYCLE = 0.02
FloatArray = npt.NDArray[np.float32]


def synth_utterance(seconds: float, rate: int, pitch: float = 140.0, seed: int = 0) -> FloatArray:
    """A speech-like signal: a voiced harmonic tone shaped into syllables (no model weights needed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = pitch * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, np.pi)), 0, None) ** 0.6
    edge = np.minimum(1, np.minimum(t, seconds - t) / 0.05)
    return (0.25 * voiced * (0.35 + 0.65 * syllables) * edge).astype(np.float32)


@dataclass
class Segment:
    """User audio the host plays into the bridge; ``turn`` marks an utterance (None: silence)."""

    audio: FloatArray
    turn: int | None
    barge_in: bool = False


@dataclass
class TurnStats:
    """When each step of one turn reached the host (monotonic seconds): the end of the user's speech (as the
    host pushed it), the final transcript of it, the reply's first text and its first audio."""

    turn: int
    speech_end: float | None = None
    final_transcript: float | None = None
    first_text: float | None = None
    first_audio: float | None = None
    bridge_share_ms: float | None = None
    reply_seconds: float = 0.0
    interrupted: bool = False
    text: str = ""
    response_id: str | None = None

    @property
    def latency_ms(self) -> float | None:
        return self.after_speech_ms(self.first_audio)

    def after_speech_ms(self, moment: float | None) -> float | None:
        """Milliseconds from the end of speech to ``moment`` (None when either is unknown)."""
        if self.speech_end is None or moment is None:
            return None
        return (moment - self.speech_end) * 1000


@dataclass
class DemoResult:
    turns: list[TurnStats]
    dropped_frames: int
    events: dict[str, int] = field(default_factory=dict)
    max_call_ms: float = 0.0
    cycle_late_p99_ms: float = 0.0


def default_script(rate: int, utterance: FloatArray | None = None) -> list[Segment]:
    def speech(n: int, seconds: float, pitch: float) -> FloatArray:
        return utterance if utterance is not None else synth_utterance(seconds, rate, pitch, seed=n)

    def silence(seconds: float) -> FloatArray:
        return np.zeros(int(seconds * rate), np.float32)

    return [
        Segment(silence(0.6), None),
        Segment(speech(1, 1.4, 140), 1),
        Segment(silence(3.4), None),
        Segment(speech(2, 2.5, 180), 2),
        Segment(silence(0.2), None),  # then silence until the reply is heard (the end of turn needs it)
        Segment(speech(3, 0.8, 220), 3, barge_in=True),  # ...and the user cuts in as it starts
        Segment(silence(4.0), None),
    ]


def load_input(path: Path) -> tuple[FloatArray, int]:
    """Any WAV the host might have: any rate or width, mixed down to mono float32."""
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise ValueError(f"cannot read {path} as audio: {exc}") from None
    mono = data.mean(axis=1).astype(np.float32)
    if len(mono) == 0:
        raise ValueError(f"{path} holds no audio")
    if rate not in HOST_RATES:
        mono = soxr.resample(mono, rate, 16000).astype(np.float32)
        rate = 16000
    return mono, int(rate)


def run_demo(
    config: BridgeConfig,
    script: list[Segment],
    rate: int,
    out_dir: Path,
    progress: Callable[[str], None] = lambda s: None,
    settle: float = 20.0,
) -> DemoResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = int(rate * CYCLE)
    stats: dict[int, TurnStats] = {}
    reply: list[FloatArray] = []
    transcript: list[str] = []
    counts: dict[str, int] = {}
    current: TurnStats | None = None
    max_call = 0.0
    lateness: list[float] = []
    # The script as 20 ms frames: (samples, turn it belongs to, last frame of the turn, barge-in).
    frames: list[tuple[FloatArray, int | None, bool, bool]] = []
    for seg in script:
        for i in range(0, len(seg.audio), frame):
            chunk = seg.audio[i : i + frame]
            if len(chunk) < frame:
                chunk = np.pad(chunk, (0, frame - len(chunk)))
            frames.append((chunk, seg.turn, i + frame >= len(seg.audio), seg.barge_in))
    bridge = SonicBridge(config)
    bridge.start()
    try:
        ready_deadline = time.monotonic() + config.connect_timeout
        while bridge.state is not ev.BridgeState.READY:
            for e in bridge.poll():
                _count(counts, e)
                if isinstance(e, ev.Error) and not e.recoverable:
                    raise RuntimeError(f"{e.code}: {e.message}")
            if time.monotonic() > ready_deadline:
                raise RuntimeError(f"the bridge was not ready after {config.connect_timeout:.0f} s")
            time.sleep(CYCLE)
        progress("bridge ready; speaking")
        start = time.monotonic()
        cycle = 0
        index = 0  # next script frame; a barge-in waits (in silence) until the reply it cuts is heard
        held_since: float | None = None
        turns_expected = {t for _, t, _, _ in frames if t is not None}
        quiet_after = len(frames) + int(settle / CYCLE)
        while True:
            due = start + cycle * CYCLE
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            lateness.append(max(0.0, time.monotonic() - due))
            t0 = time.perf_counter()
            if index < len(frames) and frames[index][3] and not _reply_started(stats, frames[index][1]):
                held_since = held_since or time.monotonic()
                if time.monotonic() - held_since < 5.0:
                    frames.insert(index, (np.zeros(frame, np.float32), None, False, False))
            if index < len(frames):
                chunk, turn, last, _ = frames[index]
                index += 1
                bridge.push_audio(chunk, rate)
                if turn is not None and last:
                    stats.setdefault(turn, TurnStats(turn)).speech_end = time.monotonic()
            else:
                bridge.push_audio(np.zeros(frame, np.float32), rate)  # a live mic keeps streaming silence
            polled = bridge.poll_timed()
            max_call = max(max_call, time.perf_counter() - t0)
            for event, sent_ns in polled:
                _count(counts, event)
                if isinstance(event, ev.Transcript) and event.role is ev.Role.USER:
                    current = stats.setdefault(event.turn_id, TurnStats(event.turn_id))
                    if event.stage is ev.Stage.FINAL:  # (the cascade's partial transcripts come before it)
                        current.final_transcript = current.final_transcript or time.monotonic()
                        transcript.append(f"USER      {event.text}")
                        progress(f"turn {event.turn_id}: heard '{event.text}'")
                elif isinstance(event, ev.AudioOut):
                    if current is not None and current.first_audio is None:
                        current.first_audio = time.monotonic()
                        current.bridge_share_ms = (time.monotonic_ns() - sent_ns) / 1e6
                        current.response_id = event.response_id
                    if current is not None:
                        current.reply_seconds += event.duration
                    reply.append(event.samples().astype(np.float32))
                elif isinstance(event, ev.Transcript):
                    if current is not None and current.first_text is None:
                        current.first_text = time.monotonic()
                    if event.stage is ev.Stage.FINAL:
                        transcript.append(f"ASSISTANT {event.text}")
                        if current is not None:
                            current.text = event.text
                elif isinstance(event, ev.Interrupted):
                    transcript.append("ASSISTANT (interrupted)")
                    progress(f"barge-in: response {event.response_id} interrupted")
                    for s in stats.values():
                        if s.response_id == event.response_id:
                            s.interrupted = True
                elif isinstance(event, ev.TurnEnded) and current is not None:
                    progress(f"turn {current.turn}: reply done ({event.stop_reason}, {current.reply_seconds:.1f} s)")
                elif isinstance(event, ev.Error):
                    progress(f"error {event.code}: {event.message}")
                    if not event.recoverable:
                        raise RuntimeError(f"{event.code}: {event.message}")
            cycle += 1
            answered = {t for t, s in stats.items() if s.first_audio is not None or s.interrupted}
            finished = index >= len(frames) and (turns_expected <= answered or cycle > quiet_after)
            if finished and (current is None or current.first_audio is None or cycle > len(frames) + 150):
                break  # (the last reply has had 3 s to finish)
    finally:
        bridge.close()
    for e in bridge.poll():
        _count(counts, e)
    audio = np.concatenate(reply) if reply else np.zeros(0, np.float32)
    soundfile.write(str(out_dir / "reply.wav"), audio, config.output_sample_rate, subtype="FLOAT")
    (out_dir / "transcript.txt").write_text("\n".join(transcript) + "\n")
    late = sorted(lateness)
    result = DemoResult(
        turns=[stats[k] for k in sorted(stats)],
        dropped_frames=bridge.stats().frames_dropped_in + bridge.stats().worker_frames_dropped,
        events=counts,
        max_call_ms=max_call * 1000,
        cycle_late_p99_ms=late[int(0.99 * (len(late) - 1))] * 1000 if late else 0.0,
    )
    (out_dir / "summary.json").write_text(json.dumps(_summary(result), indent=2))
    return result


def _reply_started(stats: dict[int, TurnStats], barge_turn: int | None) -> bool:
    """The reply to the turn before ``barge_turn`` is being heard: the moment a person cuts in."""
    previous = stats.get((barge_turn or 1) - 1)
    return previous is not None and previous.first_audio is not None


def _count(counts: dict[str, int], event: ev.Event) -> None:
    counts[type(event).__name__] = counts.get(type(event).__name__, 0) + 1


def _summary(result: DemoResult) -> dict[str, Any]:
    return {
        "turns": [
            {
                "turn": t.turn,
                "speech_end_to_final_transcript_ms": t.after_speech_ms(t.final_transcript),
                "speech_end_to_first_text_ms": t.after_speech_ms(t.first_text),
                "speech_end_to_first_audio_ms": t.latency_ms,
                "bridge_share_ms": t.bridge_share_ms,
                "reply_seconds": round(t.reply_seconds, 3),
                "interrupted": t.interrupted,
                "text": t.text,
            }
            for t in result.turns
        ],
        "dropped_frames": result.dropped_frames,
        "events": result.events,
        "host_max_call_ms": result.max_call_ms,
        "host_cycle_lateness_p99_ms": result.cycle_late_p99_ms,
    }


def format_table(results: dict[str, DemoResult]) -> str:
    """One table for the demo runs of each engine, side by side: the turn's steps after the end of speech."""
    def ms(value: float | None) -> str:
        return f"{value:.0f} ms" if value is not None else "-"

    rows = [
        "| engine | turn | end of speech -> final transcript | -> first reply text | -> first reply audio "
        "| bridge's share (worker -> host, incl. wait for the next 20 ms cycle) | reply | interrupted |",
        "|:---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for engine, result in results.items():
        for t in result.turns:
            share = f"{t.bridge_share_ms:.2f} ms" if t.bridge_share_ms is not None else "-"
            rows.append(f"| {engine} | {t.turn} | {ms(t.after_speech_ms(t.final_transcript))} | "
                        f"{ms(t.after_speech_ms(t.first_text))} | {ms(t.latency_ms)} | {share} | "
                        f"{t.reply_seconds:.1f} s | {'yes' if t.interrupted else ''} |")
    rows.append("")
    for engine, result in results.items():
        rows.append(
            f"{engine}: dropped frames: {result.dropped_frames}; longest host call: {result.max_call_ms:.2f} ms; "
            f"host cycle lateness p99: {result.cycle_late_p99_ms:.2f} ms"
        )
    return "\n".join(rows)


def stderr_progress(message: str) -> None:
    sys.stderr.write(f"  {message}\n")
    sys.stderr.flush()
