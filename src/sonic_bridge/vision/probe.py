"""``python -m sonic_bridge.vision.probe``: one Converse request to the vision model, as the worker makes it.

``sonic-bridge doctor --vision`` runs it on the worker's interpreter with the worker's environment; the
bridge configuration (JSON) comes on stdin. It sends one small synthetic frame and prints one JSON line:
``{"ok": true, "answer": ..., "seconds": ...}`` or ``{"ok": false, "kind": ..., "problem": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import numpy as np

from sonic_bridge.host.config import BridgeConfig
from sonic_bridge.vision.converse import VisionError
from sonic_bridge.vision.encoder import encode_jpeg

QUESTION = "What colour is this picture? Answer in three words."


async def probe(config: BridgeConfig) -> dict[str, Any]:
    from sonic_bridge.engines.sonic.backends import make_backend
    from sonic_bridge.vision.setup import vision_model

    backend = make_backend(config)
    model = vision_model(backend)
    if model is None:
        return {"ok": False, "kind": "NoVisionModel", "problem": f"backend {config.backend!r} has no vision model"}
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:] = (0, 128, 255)
    jpeg = encode_jpeg(frame, "rgb24", 64, 80)[0]
    started = time.monotonic()
    try:
        answer = await asyncio.wait_for(model.describe(config.vision.model_id, config.vision.model_prompt, QUESTION,
                                                       [jpeg], 32), config.vision.look_timeout_s)
    except VisionError as exc:
        return {"ok": False, "kind": exc.kind, "problem": exc.explain(config.vision.model_id)}
    except TimeoutError:
        return {"ok": False, "kind": "Timeout", "problem": f"no answer within {config.vision.look_timeout_s:g} s"}
    finally:
        await backend.aclose()
    return {"ok": True, "answer": answer, "seconds": round(time.monotonic() - started, 3)}


def main() -> int:
    try:
        config = BridgeConfig.from_json(json.loads(sys.stdin.read()))
        result = asyncio.run(probe(config))
    except Exception as exc:  # reported as a problem, never a traceback to parse
        result = {"ok": False, "kind": type(exc).__name__, "problem": str(exc)}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
