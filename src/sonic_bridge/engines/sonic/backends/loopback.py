"""A minimal in-process backend for ring and client tests: it echoes user audio and text straight back.

It keeps none of the service's rules; the fake Sonic (sonic_bridge.fake) is the faithful one.
"""

from __future__ import annotations

import asyncio
import json

from sonic_bridge.settings import SessionSettings


def _out(name: str, body: dict[str, object]) -> str:
    return json.dumps({"event": {name: body}})


class LoopbackStream:
    def __init__(self) -> None:
        self._out: asyncio.Queue[str | None] = asyncio.Queue()
        self._audio_open = False
        self._blocks = 0
        self._interactive: set[str] = set()

    async def send(self, event: str) -> None:
        ((name, body),) = json.loads(event)["event"].items()
        if name == "contentStart" and body.get("type") == "TEXT" and body.get("interactive"):
            self._interactive.add(body["contentName"])
        if name == "audioInput":
            if not self._audio_open:
                self._audio_open = True
                self._out.put_nowait(
                    _out("contentStart", {"contentId": "loop-audio", "type": "AUDIO", "role": "ASSISTANT"})
                )
            self._out.put_nowait(_out("audioOutput", {"contentId": "loop-audio", "content": body["content"]}))
        elif name == "textInput" and body.get("contentName") in self._interactive:
            self._blocks += 1
            cid = f"loop-text-{self._blocks}"
            self._out.put_nowait(
                _out(
                    "contentStart",
                    {
                        "contentId": cid,
                        "type": "TEXT",
                        "role": "ASSISTANT",
                        "additionalModelFields": '{"generationStage":"FINAL"}',
                    },
                )
            )
            self._out.put_nowait(
                _out("textOutput", {"contentId": cid, "role": "ASSISTANT", "content": body["content"]})
            )
            self._out.put_nowait(_out("contentEnd", {"contentId": cid, "type": "TEXT", "stopReason": "PARTIAL_TURN"}))
        elif name == "sessionEnd":
            self._out.put_nowait(None)

    async def receive(self) -> str | None:
        return await self._out.get()

    async def end_input(self) -> None:
        self._out.put_nowait(None)

    async def aclose(self) -> None:
        self._out.put_nowait(None)


FAIL_PREFIX = "loopback:raise "  # a system prompt starting so makes open() raise: a bug, for crash tests


class LoopbackBackend:
    async def open(self, settings: SessionSettings) -> LoopbackStream:
        if settings.system_prompt.startswith(FAIL_PREFIX):
            raise RuntimeError(settings.system_prompt.removeprefix(FAIL_PREFIX))
        return LoopbackStream()

    async def aclose(self) -> None:
        return None
