"""``sonic-bridge demo --camera``: the avatar looks. Camera frames at 30 fps, one spoken (or typed) question,
the look tool's answer printed and saved.

Frames are synthetic (a colour that changes every two seconds, with a white square moving across it) or come
from an image file (animated GIF/WebP/PNG play in a loop; Pillow reads them on the host, for the demo only).
On the fake Sonic the question is spoken in the fake's own words (``sonic_bridge.fake.speech``); on the
service it is the ``--input`` recording, else typed text (Nova 2 and later).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic_bridge import events as ev
from sonic_bridge.host.client import SonicBridge
from sonic_bridge.host.config import BridgeConfig

Frame = npt.NDArray[np.uint8]
QUESTION = "What do you see?"
COLOURS = ((200, 30, 30), (30, 160, 60), (40, 60, 200), (220, 200, 40), (150, 40, 160))
CYCLE = 0.02
FPS = 30


def synthetic_frames(width: int = 640, height: int = 480) -> Callable[[float], Frame]:
    """A frame for time ``t`` (seconds): a colour that changes every 2 s and a white square that moves."""
    def frame(t: float) -> Frame:
        image = np.empty((height, width, 3), np.uint8)
        image[:] = COLOURS[int(t / 2) % len(COLOURS)]
        x = int((t * 120) % (width - 80))
        image[height // 2 - 40 : height // 2 + 40, x : x + 80] = 255
        return image

    return frame


def file_frames(path: Path) -> Callable[[float], Frame]:
    """The frames of an image file, looped at their own pace (a still image is one frame)."""
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as image:
            frames = [(np.asarray(f.convert("RGB"), dtype=np.uint8).copy(), (f.info.get("duration") or 100) / 1000)
                      for f in ImageSequence.Iterator(image)]
    except (OSError, ValueError) as exc:
        raise ValueError(f"--camera {path}: not an image file Pillow can read ({exc})") from None
    total = sum(d for _, d in frames)

    def frame(t: float) -> Frame:
        at = t % total if total > 0 else 0.0
        for pixels, duration in frames:
            if at < duration:
                return pixels
            at -= duration
        return frames[-1][0]

    return frame


def _question_audio(config: BridgeConfig, recording: npt.NDArray[np.float32] | None) -> Iterator[Any]:
    if recording is not None:
        yield from (recording[i : i + 320] for i in range(0, len(recording), 320))
    elif config.backend == "fake":
        from sonic_bridge.fake.speech import say

        audio = say(QUESTION, 16000)
        yield from (audio[i : i + 320] for i in range(0, len(audio), 320))


def run_camera_demo(config: BridgeConfig, source: str, out_dir: Path,
                    recording: npt.NDArray[np.float32] | None = None,
                    progress: Callable[[str], None] = lambda s: None, timeout: float = 60.0) -> ev.Look | None:
    """Show the camera for a few seconds, ask what the avatar sees, and wait for the look and its spoken answer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = synthetic_frames() if source == "synthetic" else file_frames(Path(source))
    if not config.vision.enabled:
        config = replace(config, vision=replace(config.vision, enabled=True))
    look: ev.Look | None = None
    transcript: list[str] = []
    reply: list[npt.NDArray[np.float32]] = []
    shown: Frame | None = None
    with SonicBridge(config) as bridge:
        start = time.monotonic()
        asked_at: float | None = None
        question = iter(())  # type: Iterator[Any]
        next_frame = start
        answered = False
        while time.monotonic() - start < timeout and not answered:
            now = time.monotonic()
            if now >= next_frame:
                shown = frames(now - start)
                bridge.push_video(shown, timestamp=now)
                next_frame += 1 / FPS
            chunk = next(question, None)
            bridge.push_audio(chunk if chunk is not None else np.zeros(320, np.float32), 16000)
            if asked_at is None and bridge.state is ev.BridgeState.READY and now - start > 3.0:
                asked_at = now
                progress(f"camera on for {now - start:.1f} s; asking: {QUESTION}")
                audio = list(_question_audio(config, recording))
                if audio:
                    question = iter(audio)
                else:
                    bridge.send_text(QUESTION)
            for event in bridge.poll():
                if isinstance(event, ev.Look):
                    look = event
                    ages = ", ".join(f"{a:.1f}" for a in event.frame_ages)
                    progress(f"looked at {len(event.frame_ages)} frames (ages {ages} s) with {event.model_id} in "
                             f"{event.latency:.2f} s")
                elif isinstance(event, ev.Transcript) and event.stage is ev.Stage.FINAL:
                    transcript.append(f"{event.role.value:<9} {event.text}")
                    answered = look is not None and event.role is ev.Role.ASSISTANT
                elif isinstance(event, ev.AudioOut) and look is not None:
                    reply.append(event.samples().astype(np.float32))
                elif isinstance(event, ev.Warning | ev.Error):
                    progress(f"{type(event).__name__.lower()} {event.code}: {event.message}")
                    if isinstance(event, ev.Error) and not event.recoverable:
                        raise RuntimeError(f"{event.code}: {event.message}")
            time.sleep(CYCLE)
        stats = bridge.stats()
    _save(out_dir, look, transcript, reply, shown, config, stats.video_frames_in, stats.video_frames_kept)
    return look


def _save(out_dir: Path, look: ev.Look | None, transcript: list[str], reply: list[npt.NDArray[np.float32]],
          shown: Frame | None, config: BridgeConfig, pushed: int, kept: int) -> None:
    import soundfile

    summary = {"question": look.question if look else None, "answer": look.answer if look else None,
               "error": look.error if look else "no look happened", "model": config.vision.model_id,
               "frame_ages_s": list(look.frame_ages) if look else [], "latency_s": look.latency if look else None,
               "frames_pushed": pushed, "frames_kept": kept}
    (out_dir / "look.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "transcript.txt").write_text("\n".join(transcript) + "\n")
    if reply:
        soundfile.write(str(out_dir / "reply.wav"), np.concatenate(reply), config.output_sample_rate, subtype="FLOAT")
    if shown is not None:
        try:
            from PIL import Image
        except ImportError:  # a host without Pillow: the raw frame
            np.save(out_dir / "camera.npy", shown)
        else:
            Image.fromarray(shown).save(out_dir / "camera.png")
