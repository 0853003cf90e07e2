"""The built-in look tool: registered with Nova Sonic, answered in the worker from the camera's window.

A look takes up to K frames evenly spread over the window (newest last), asks the vision model the
question, and returns its answer as the tool result. Whatever goes wrong (no frame yet, a camera that went
quiet, the vision model throttled, denied or silent) becomes a result that tells the model the camera is
unavailable, plus a host Warning: the conversation never stops for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge.settings import SessionSettings, Tool
from sonic_bridge.vision.camera import Camera
from sonic_bridge.vision.converse import VisionError, VisionModel
from sonic_bridge.vision.settings import VisionSettings

log = logging.getLogger("sonic_bridge.vision")
DEFAULT_QUESTION = "What do you see?"
MAX_QUESTION_CHARS = 2000


def look_tool(settings: VisionSettings) -> Tool:
    return Tool(settings.tool_name, settings.tool_description, {
        "type": "object",
        "properties": {"question": {"type": "string", "description": "What to look for or answer, in the user's "
                                                                     "words, e.g. 'What am I holding?'"}},
        "required": ["question"],
    })


def session_with_look(session: SessionSettings, settings: VisionSettings) -> SessionSettings:
    """The session as Nova Sonic gets it when vision is on: the look tool added, its instructions appended."""
    prompt = session.system_prompt
    extra = settings.instructions_text.strip()
    if extra:
        prompt = f"{prompt.rstrip()}\n\n{extra}"
    return dataclasses.replace(session, tools=(*session.tools, look_tool(settings)), system_prompt=prompt)


@dataclass(frozen=True, slots=True)
class LookResult:
    content: str  # the tool result for Nova Sonic (JSON text)
    event: ev.Look  # for the host
    warning: ev.Warning | None  # for the host, when the look failed


class LookTool:
    def __init__(self, settings: VisionSettings, camera: Camera, model: VisionModel | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.camera = camera
        self.model = model
        self.clock = clock
        self.looks = 0
        self.failures = 0

    @property
    def name(self) -> str:
        return self.settings.tool_name

    async def answer(self, tool_use_id: str, arguments: dict[str, object]) -> LookResult:
        """One look, never raising: the answer, or a result saying the camera is unavailable."""
        self.looks += 1
        raw = arguments.get("question")
        question = raw.strip()[:MAX_QUESTION_CHARS] if isinstance(raw, str) and raw.strip() else DEFAULT_QUESTION
        model_id = self.settings.model_id
        try:
            await self.camera.sample()  # the newest frame, not the one of up to half an interval ago
        except Exception:
            log.exception("could not sample a camera frame for a look")
        now = self.clock()
        shots = self.camera.window.pick(self.settings.frames_for_look)
        ages = tuple(round(max(0.0, now - s.captured), 3) for s in shots)
        if not shots:
            return self._failed(tool_use_id, question, ages, 0.0, "no camera frame has arrived yet")
        if ages[-1] > self.settings.stale_after_s:
            return self._failed(tool_use_id, question, (), 0.0,
                                f"the camera has sent no frame for {ages[-1]:.1f} s (vision.stale_after_s="
                                f"{self.settings.stale_after_s:g})")
        if self.model is None:
            return self._failed(tool_use_id, question, (), 0.0, "this backend has no vision model")
        started = self.clock()
        try:
            text = await asyncio.wait_for(
                self.model.describe(model_id, self.settings.model_prompt, question, [s.jpeg for s in shots],
                                    self.settings.max_answer_tokens),
                self.settings.look_timeout_s)
        except VisionError as exc:
            return self._failed(tool_use_id, question, ages, self.clock() - started, exc.explain(model_id))
        except TimeoutError:
            return self._failed(tool_use_id, question, ages, self.clock() - started,
                                f"{model_id} gave no answer within {self.settings.look_timeout_s:g} s "
                                "(vision.look_timeout_s)")
        except Exception as exc:  # a bug or an SDK surprise: the conversation goes on regardless
            log.exception("the look failed")
            return self._failed(tool_use_id, question, ages, self.clock() - started,
                                f"{model_id} failed: {type(exc).__name__}: {exc}")
        latency = round(self.clock() - started, 3)
        content = json.dumps({"camera": "available", "answer": text, "frames": len(shots),
                              "newest_frame_age_s": ages[-1]})
        return LookResult(content, ev.Look(tool_use_id, question, model_id, ages, latency, text), None)

    def _failed(self, tool_use_id: str, question: str, ages: tuple[float, ...], latency: float,
                why: str) -> LookResult:
        self.failures += 1
        content = json.dumps({"camera": "unavailable", "reason": why,
                              "instruction": "Tell the user briefly that you cannot see right now."})
        event = ev.Look(tool_use_id, question, self.settings.model_id, ages, round(latency, 3), "", why)
        return LookResult(content, event, ev.Warning(errors.VISION_UNAVAILABLE, f"the look failed: {why}"))
