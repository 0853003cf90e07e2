"""Downscale a camera frame to a maximum side and encode it as JPEG (Pillow: libjpeg-turbo, C resampling).

Chosen by measurement (``benchmarks/jpeg_libraries.py``, downscale to 640 px + JPEG q80 on the 2-core
development machine): Pillow 1.3-1.5 ms for 640x480, 2-7 ms for 1280x720, 5-6 ms for 1920x1080, in 22 MB
installed; OpenCV (opencv-python-headless) was as fast or faster (0.7-9 ms) but weighs 159 MB; simplejpeg
(1 MB) has no resizing, and a numpy box filter made 1280x720 take 40-80 ms, with larger files (4:4:4). At
one kept frame per second a few milliseconds in the worker's thread are nothing, so the weight decided;
OpenAvatarChat already depends on Pillow. It runs only in the worker (the host never imports it).
"""

from __future__ import annotations

import io
import math

import numpy as np
import numpy.typing as npt


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size a frame is sent at: unchanged when it fits, else scaled so its longer side is ``max_side``."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_jpeg(pixels: npt.NDArray[np.uint8], pixel_format: str, max_side: int,
                quality: int) -> tuple[bytes, int, int]:
    """``pixels`` ([H, W, 3] rgb24 or bgr24) as a JPEG of at most ``max_side`` px a side: (bytes, width, height)."""
    from PIL import Image

    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    data = np.ascontiguousarray(pixels)
    # The raw decoder swaps BGR while it copies: no numpy pass over the pixels.
    raw = "BGR" if pixel_format == "bgr24" else "RGB"
    image = Image.frombuffer("RGB", (width, height), data, "raw", raw, 0, 1)
    size = target_size(width, height, max_side)
    if size != (width, height):
        factor = math.floor(max(width / size[0], height / size[1]))
        if factor >= 2:
            image = image.reduce(factor)  # a box filter by a whole factor: cheap, and it averages the noise
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue(), size[0], size[1]
