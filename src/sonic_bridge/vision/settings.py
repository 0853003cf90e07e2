"""``VisionSettings``: the camera sampling, the frame window and the look tool, validated on the host."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from sonic_bridge import checks

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_MODEL = "us.amazon.nova-2-lite-v1:0"
# Images one Converse request may carry, per model (ids without the cross-Region prefix). Nova 2 Lite takes
# at most 5 embedded objects per request (Nova 2 user guide, multimodal models); the Converse API takes
# at most 20 images per message, which is the limit of the Nova v1 models and of models not listed here.
IMAGE_LIMITS = {
    "amazon.nova-2-lite-v1:0": 5,
    "amazon.nova-lite-v1:0": 20,
    "amazon.nova-pro-v1:0": 20,
    "amazon.nova-premier-v1:0": 20,
}
CONVERSE_IMAGE_LIMIT = 20
MAX_IMAGE_BYTES = 3_750_000  # Converse: each image at most 3.75 MB ...
MAX_IMAGE_SIDE = 8000  # ... and 8000 px on each side
_PREFIX = re.compile(r"^(us|eu|apac|global|us-gov|jp|au|ca)\.")
MAX_TEXT_BYTES = 10_000

DEFAULT_DESCRIPTION = (
    "Look through the camera and answer a question about what it shows right now (the user, the room, "
    "objects held up, text, gestures). Call this whenever the user asks what you see, whether you can see "
    "them, or anything that needs your eyes."
)
DEFAULT_INSTRUCTIONS = (
    "You can see through a camera with the {tool} tool. When the user asks what you see or anything about "
    "how things look, call {tool} with their question and answer from its result. Do not describe the "
    "picture unprompted. If the result says the camera is unavailable, say so briefly."
)
DEFAULT_MODEL_PROMPT = (
    "You are the eyes of a voice assistant. The images are frames from its camera, oldest first, the last one "
    "taken just now. Answer the question about them in one or two short spoken sentences, without markdown."
)


def base_model_id(model_id: str) -> str:
    """The model id without its cross-Region inference prefix ("us.", "global." ...)."""
    return _PREFIX.sub("", model_id, count=1)


def image_limit(model_id: str) -> int:
    """How many images one Converse request to ``model_id`` may carry."""
    return IMAGE_LIMITS.get(base_model_id(model_id), CONVERSE_IMAGE_LIMIT)


@dataclass(frozen=True, slots=True)
class VisionSettings:
    """Camera frames and the built-in look tool (off unless ``enabled``).

    The host keeps one pushed frame per ``frame_interval_s`` in a shared-memory slot; the worker turns each
    kept frame into a JPEG of at most ``max_side`` pixels and keeps the last ``window`` of them. When Nova
    Sonic calls the look tool, up to ``frames_per_look`` frames evenly spread over the window (newest last)
    go to ``model_id`` through Bedrock Converse with the question; its answer is the tool result.
    """

    enabled: bool = False
    model_id: str = DEFAULT_MODEL
    frame_interval_s: float = 1.0
    max_side: int = 640
    window: int = 20
    frames_per_look: int | None = None  # None: the model's per-request image limit (5 for Nova 2 Lite)
    jpeg_quality: int = 80
    stale_after_s: float = 10.0  # newest frame older than this at a look: the camera counts as unavailable
    max_frame_bytes: int = 3840 * 2160 * 3  # largest frame push_video takes (H * W * 3): 4K
    look_timeout_s: float = 20.0  # the vision model's answer, at most
    max_answer_tokens: int = 300
    tool_name: str = "look_at_camera"
    tool_description: str = DEFAULT_DESCRIPTION
    instructions: str = DEFAULT_INSTRUCTIONS  # appended to the system prompt; "{tool}" is the tool's name
    model_prompt: str = DEFAULT_MODEL_PROMPT  # the vision model's system prompt

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"vision.enabled must be True or False, got {checks.show(self.enabled)}")
        checks.text("vision.model_id", self.model_id, max_bytes=2048)
        if any(c.isspace() for c in self.model_id):
            raise ValueError(f"vision.model_id must be a Bedrock model id without spaces, got {self.model_id!r:.100}")
        checks.number("vision.frame_interval_s", self.frame_interval_s, 0.25, 60.0, " seconds")
        checks.integer("vision.max_side", self.max_side, 64, MAX_IMAGE_SIDE, " pixels")
        checks.integer("vision.window", self.window, 1, 200, " frames")
        limit = image_limit(self.model_id)
        if self.frames_per_look is not None:
            checks.integer("vision.frames_per_look", self.frames_per_look, 1, limit,
                           f" (the per-request image limit of {self.model_id})")
        checks.integer("vision.jpeg_quality", self.jpeg_quality, 30, 95)
        checks.number("vision.stale_after_s", self.stale_after_s, 0.5, 3600.0, " seconds")
        checks.integer("vision.max_frame_bytes", self.max_frame_bytes, 64 * 64 * 3, MAX_IMAGE_SIDE * MAX_IMAGE_SIDE * 3,
                       " bytes (height * width * 3)")
        checks.number("vision.look_timeout_s", self.look_timeout_s, 1.0, 300.0, " seconds")
        checks.integer("vision.max_answer_tokens", self.max_answer_tokens, 16, 10_000)
        if not isinstance(self.tool_name, str) or not TOOL_NAME.match(self.tool_name):
            raise ValueError(f"vision.tool_name must be 1 to 64 letters, digits, '_' or '-', got "
                             f"{checks.show(self.tool_name)}")
        checks.text("vision.tool_description", self.tool_description, max_bytes=MAX_TEXT_BYTES)
        checks.text("vision.instructions", self.instructions, max_bytes=MAX_TEXT_BYTES, empty=True)
        checks.text("vision.model_prompt", self.model_prompt, max_bytes=MAX_TEXT_BYTES)

    @property
    def frames_for_look(self) -> int:
        """How many frames one look sends: the setting, else the model's limit, never more than the window."""
        wanted = self.frames_per_look if self.frames_per_look is not None else image_limit(self.model_id)
        return min(wanted, self.window)

    @property
    def instructions_text(self) -> str:
        return self.instructions.replace("{tool}", self.tool_name)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> VisionSettings:
        if not isinstance(raw, dict):
            raise ValueError(f"vision must be an object, got {checks.show(raw)}")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"vision has unknown keys {sorted(map(str, unknown))}")
        return cls(**raw)
