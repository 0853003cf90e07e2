"""How the worker's JPEG library was chosen: downscale to 640 px + JPEG q80, for each library installed.

    .venv/bin/python benchmarks/jpeg_libraries.py            # Pillow (the project's choice) is always there
    pip install --target /tmp/jpeg simplejpeg opencv-python-headless --no-deps
    PYTHONPATH=/tmp/jpeg .venv/bin/python benchmarks/jpeg_libraries.py

simplejpeg has no resizing of its own: numpy box-downscales by a whole factor (a strided pick for 3x) first.
Installed sizes are read from the packages' folders.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SIZES = ((640, 480), (1280, 720), (1920, 1080))


def frame(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=-1).astype(np.int16)
    return np.clip(base + np.random.default_rng(0).integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def timed(fn: Callable[[], bytes], n: int = 40) -> tuple[float, int]:
    out = fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000, len(out)


def installed_mb(module: str, libs: str) -> float:
    """The package's folder and its bundled native libraries (``<dist>.libs``), in MB; 0 when not installed."""
    try:
        folder = Path(importlib.import_module(module).__file__ or "").parent
    except ImportError:
        return 0.0
    total = 0
    for part in (folder, folder.parent / libs):
        if part.is_dir():
            total += sum(f.stat().st_size for f in part.rglob("*") if f.is_file())
    return total / 1e6


def candidates(bgr: np.ndarray, size: tuple[int, int]) -> dict[str, Callable[[], bytes]]:
    found: dict[str, Callable[[], bytes]] = {}
    from sonic_bridge.vision.encoder import encode_jpeg

    found["pillow (sonic-bridge encoder)"] = lambda: encode_jpeg(bgr, "bgr24", 640, 80)[0]
    try:
        import simplejpeg

        def sj() -> bytes:
            h, w = bgr.shape[:2]
            k = max(1, round(max(w, h) / 640))
            a = bgr
            if k == 2:
                a = bgr[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).astype(np.uint8)
            elif k > 2:
                a = bgr[::k, ::k]
            return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(a), quality=80, colorspace="BGR"))

        found["simplejpeg + numpy downscale"] = sj
    except ImportError:
        pass
    try:
        import cv2

        def cv() -> bytes:
            small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA) if size != bgr.shape[1::-1] else bgr
            return bytes(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())

        found["opencv-python-headless"] = cv
    except ImportError:
        pass
    return found


def main() -> None:
    from sonic_bridge.vision.encoder import target_size

    print(f"installed: pillow {installed_mb('PIL', 'pillow.libs'):.0f} MB, simplejpeg "
          f"{installed_mb('simplejpeg', 'simplejpeg.libs'):.1f} MB, opencv "
          f"{installed_mb('cv2', 'opencv_python_headless.libs'):.0f} MB (0: not installed here); "
          f"{os.cpu_count()} cores")
    print("| frame | library | median ms | JPEG KiB |\n|---|---|---:|---:|")
    for w, h in SIZES:
        bgr = frame(w, h)
        for name, fn in candidates(bgr, target_size(w, h, 640)).items():
            ms, size = timed(fn)
            print(f"| {w}x{h} | {name} | {ms:.2f} | {size / 1024:.0f} |")


if __name__ == "__main__":
    main()
