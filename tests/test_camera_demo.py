"""``sonic-bridge demo --camera``: the avatar is shown a camera, asked what it sees, and the answer is saved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sonic_bridge.cli.camera_demo import file_frames, synthetic_frames

pytest.importorskip("PIL")


def test_synthetic_frames_change_colour_over_time_and_image_files_loop() -> None:
    frame = synthetic_frames(160, 120)
    assert frame(0.0).shape == (120, 160, 3) and frame(0.0).dtype == np.uint8
    assert tuple(frame(0.0)[0, 0]) != tuple(frame(2.5)[0, 0])


def test_demo_camera_with_an_image_file_prints_and_saves_the_answer(tmp_path: Path) -> None:
    from PIL import Image

    picture = tmp_path / "green.gif"
    frames = [Image.new("RGB", (320, 240), (0, 255, 0)), Image.new("RGB", (320, 240), (0, 200, 0))]
    frames[0].save(picture, save_all=True, append_images=frames[1:], duration=200, loop=0)
    assert file_frames(picture)(0.0).shape == (240, 320, 3)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "sonic_bridge.cli", "demo", "--camera", str(picture),
                           "--output-dir", str(out)], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "A: I see " in done.stdout and "mostly green" in done.stdout
    look = json.loads((out / "look.json").read_text())
    assert look["question"] == "what do you see?" and look["answer"].count("320x240, mostly green") >= 2
    assert look["frames_kept"] < look["frames_pushed"] and (out / "camera.png").exists()
    assert "ASSISTANT I see" in (out / "transcript.txt").read_text() and (out / "reply.wav").stat().st_size > 0


def test_demo_camera_refuses_a_file_that_is_not_an_image(tmp_path: Path) -> None:
    bogus = tmp_path / "x.gif"
    bogus.write_text("not an image")
    done = subprocess.run([sys.executable, "-m", "sonic_bridge.cli", "demo", "--camera", str(bogus),
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2 and "not an image file Pillow can read" in done.stderr
