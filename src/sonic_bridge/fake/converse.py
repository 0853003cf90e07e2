"""The fake Bedrock Converse for the look tool (sans-IO): a request's path and JSON in, the reply out.

It answers at the real route (``POST /model/{modelId}/converse``) with the real response shape, computed
from the images it received (how many, their sizes, each one's dominant colour), so a test can tell which
frames were sent. It refuses what the service refuses, with the service's exception names and HTTP
statuses: too many images for the model, an image over 3.75 MB or 8000 px, a format outside png, jpeg,
gif and webp, bytes that are not the declared format. The scenario's ``looks`` plan faults and delays.

A retry sends the same body again: it gets the same outcome (the SDK retries throttling three times, and
a planned throttle must stay a throttle), and only a new request moves on to the next plan.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import io
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from sonic_bridge.fake.scenario import LookPlan, Scenario
from sonic_bridge.vision.settings import IMAGE_LIMITS, MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, base_model_id

_PATH = re.compile(r"^/model/([^/?]+)/converse/?$")
FORMATS = ("png", "jpeg", "gif", "webp")
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}
MAX_REQUEST_BYTES = 30 * 1024 * 1024
TOKENS_PER_IMAGE = 230
PALETTE = {
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (255, 0, 0),
    "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0), "cyan": (0, 255, 255),
    "magenta": (255, 0, 255), "orange": (255, 128, 0), "purple": (128, 0, 128), "dark green": (0, 128, 0),
    "navy": (0, 0, 128), "brown": (128, 64, 0),
}
FAULTS = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "access_denied": (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
    "unavailable": (503, "ServiceUnavailableException", "The service is temporarily unable to handle the request."),
    "not_ready": (429, "ModelNotReadyException", "The model is not ready to serve inference requests."),
}
INVALID_MODEL = "The provided model identifier is invalid."


def converse_model(path: str) -> str | None:
    """The model id of a Converse request path, or None when the path is not Converse."""
    found = _PATH.match(path.split("?", 1)[0])
    return urllib.parse.unquote(found.group(1)) if found else None


@dataclass(frozen=True, slots=True)
class Seen:
    """One image as the fake saw it."""

    width: int
    height: int
    colour: str
    size: int  # bytes


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    delay: float  # seconds to wait before answering (a slow model)


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_reply(status: int, kind: str, message: str, delay: float = 0.0) -> Reply:
    headers = [("content-type", "application/json"), ("x-amzn-errortype", f"{kind}:http://internal.amazon.com/")]
    return Reply(status, headers, json.dumps({"message": message}).encode(), delay)


def dominant_colour(rgb: Any) -> str:
    """The palette name most pixels of an [H, W, 3] array are closest to."""
    import numpy as np

    names = list(PALETTE)
    colours = np.array([PALETTE[n] for n in names], dtype=np.int32)
    pixels = np.asarray(rgb, dtype=np.int32).reshape(-1, 3)
    nearest = np.argmin(((pixels[:, None, :] - colours[None, :, :]) ** 2).sum(axis=2), axis=1)
    return names[int(np.argmax(np.bincount(nearest, minlength=len(names))))]


def look_at(fmt: str, data: bytes, where: str) -> Seen:
    """Decode one image as the service would; _Refused when it cannot be used."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise _Refused(400, "ValidationException", f"The model returned the following errors: {where}: the image is "
                       f"{len(data)} bytes; images must be at most {MAX_IMAGE_BYTES} bytes (3.75 MB).")
    try:
        image = Image.open(io.BytesIO(data))
        actual = image.format
        width, height = image.size
        if actual != _PIL_FORMATS[fmt]:
            raise _Refused(400, "ValidationException", f"The model returned the following errors: {where}: the "
                           f"image is not a valid {fmt} image (its bytes are {actual or 'unknown'}).")
        if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
            raise _Refused(400, "ValidationException", f"The model returned the following errors: {where}: the image "
                           f"is {width}x{height} pixels; at most {MAX_IMAGE_SIDE} pixels a side are allowed.")
        image.thumbnail((32, 32))
        colour = dominant_colour(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise _Refused(400, "ValidationException", f"The model returned the following errors: {where}: unable to "
                       f"process the image: it is not a valid {fmt} image.") from None
    return Seen(width, height, colour, len(data))


class FakeConverse:
    """The fake's Converse endpoint: one per fake service, so the ``looks`` plan runs across its streams."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.requests = 0  # distinct requests (retries not counted)
        self.calls = 0
        self.seen: collections.deque[tuple[str, list[Seen]]] = collections.deque(maxlen=32)  # question, images
        self._last: tuple[bytes, LookPlan] | None = None

    def _plan(self, body: bytes) -> LookPlan:
        digest = hashlib.sha256(body).digest()
        if self._last is not None and self._last[0] == digest:
            return self._last[1]  # a retry of the last request
        self.requests += 1
        looks = self.scenario.looks
        plan = looks[self.requests - 1] if self.requests <= len(looks) else LookPlan()
        self._last = (digest, plan)
        return plan

    def handle(self, model_id: str, body: bytes) -> Reply:
        self.calls += 1
        if len(body) > MAX_REQUEST_BYTES:
            return error_reply(400, "ValidationException", f"The request is {len(body)} bytes; at most "
                               f"{MAX_REQUEST_BYTES} bytes are allowed.")
        plan = self._plan(body)
        delay = self.scenario.scaled(plan.delay_ms / 1000)
        if plan.fault is not None:
            return error_reply(*FAULTS[plan.fault], delay=delay)
        try:
            limit = self._image_limit(model_id)
            question, images = self._read(body, limit)
        except _Refused as exc:
            return error_reply(exc.status, exc.kind, exc.message, delay)
        self.seen.append((question, images))
        text = plan.answer or describe(images, question)
        tokens_in = TOKENS_PER_IMAGE * len(images) + len(question) // 4 + 1
        tokens_out = len(text) // 4 + 1
        response = {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out, "totalTokens": tokens_in + tokens_out},
            "metrics": {"latencyMs": int(delay * 1000) + 5},
        }
        return Reply(200, [("content-type", "application/json")], json.dumps(response).encode(), delay)

    @staticmethod
    def _image_limit(model_id: str) -> int:
        base = base_model_id(model_id)
        if base not in IMAGE_LIMITS:
            raise _Refused(400, "ValidationException", INVALID_MODEL)
        return IMAGE_LIMITS[base]

    @staticmethod
    def _read(body: bytes, limit: int) -> tuple[str, list[Seen]]:
        try:
            request = json.loads(body)
            messages = request["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must hold at least one message")
        except (ValueError, KeyError, TypeError) as exc:
            raise _Refused(400, "ValidationException", f"Malformed input request: {exc}") from None
        questions: list[str] = []
        blocks: list[tuple[str, str, Any]] = []
        for m, message in enumerate(messages, 1):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list) or not content:
                raise _Refused(400, "ValidationException", f"Malformed input request: messages.{m}.content must "
                               "hold at least one content block")
            for c, block in enumerate(content, 1):
                where = f"messages.{m}.member.content.{c}.member"
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    questions.append(block["text"])
                elif isinstance(block, dict) and isinstance(block.get("image"), dict):
                    image = block["image"]
                    blocks.append((where, image.get("format"), image.get("source")))
                else:
                    raise _Refused(400, "ValidationException", f"Malformed input request: {where} is not a text or "
                                   "image content block")
        if len(blocks) > limit:
            raise _Refused(400, "ValidationException", f"The model returned the following errors: too many images: "
                           f"{len(blocks)} were sent; this model takes at most {limit} per request.")
        seen = []
        for where, fmt, source in blocks:
            if fmt not in FORMATS:
                raise _Refused(400, "ValidationException", f"1 validation error detected: Value '{fmt}' at "
                               f"'{where}.image.format' failed to satisfy constraint: Member must satisfy enum "
                               f"value set: [{', '.join(FORMATS)}]")
            raw = source.get("bytes") if isinstance(source, dict) else None
            try:
                data = base64.b64decode(raw if isinstance(raw, str) else "", validate=True)
            except (binascii.Error, ValueError):
                data = b""
            if not data:
                raise _Refused(400, "ValidationException", f"Malformed input request: {where}.image.source.bytes "
                               "must be base64 image bytes")
            seen.append(look_at(fmt, data, f"{where}.image"))
        return " ".join(questions).strip(), seen


def describe(images: list[Seen], question: str) -> str:
    """The fake's answer: what it received, image by image, oldest first."""
    if not images:
        return f"I was shown no image. You asked: {question}"
    parts = [f"image {i}: {s.width}x{s.height}, mostly {s.colour}" for i, s in enumerate(images, 1)]
    noun = "image" if len(images) == 1 else "images"
    return f"I see {len(images)} {noun}. " + "; ".join(parts) + f". You asked: {question}"
