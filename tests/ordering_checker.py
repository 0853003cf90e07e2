"""An ordering checker for Nova Sonic input events, written apart from the protocol state machine.

It encodes the service's rules from the protocol document (section 2.3) as a straight scan, so a bug
in SonicSession cannot hide behind the same bug here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any


class OrderingViolation(AssertionError):
    pass


def check_input_sequence(events: list[dict[str, Any]], *, nova1: bool = False) -> None:
    def fail(i: int, why: str) -> None:
        raise OrderingViolation(f"event {i} ({names[i] if i < len(names) else '-'}): {why}")

    names = [next(iter(e["event"])) for e in events]
    bodies = [e["event"][n] for e, n in zip(events, names, strict=True)]
    if not events:
        return
    if names[0] != "sessionStart":
        fail(0, "first event must be sessionStart")
    start = bodies[0]
    if nova1 and "turnDetectionConfiguration" in start:
        fail(0, "Nova Sonic 1 takes no turnDetectionConfiguration")
    if "endpointingSensitivity" in start:
        fail(0, "flat endpointingSensitivity is rejected")
    if len(events) < 2 or names[1] != "promptStart":
        fail(1, "second event must be promptStart")
    prompt = bodies[1]["promptName"]
    phase = "system"  # system -> history -> audio -> closing -> done
    open_block: dict[str, Any] | None = None
    block_payloads = 0
    audio_name: str | None = None
    last_history_role: str | None = None
    i = 2
    while i < len(events):
        name, body = names[i], bodies[i]
        if phase == "done":
            fail(i, "nothing may follow sessionEnd")
        if name != "sessionEnd" and body.get("promptName") != prompt:
            fail(i, "wrong promptName")
        if name == "contentStart":
            if open_block is not None:
                fail(i, "a block started inside an open block")
            kind, role = body["type"], body.get("role")
            if kind == "AUDIO":
                if phase != "history":
                    fail(i, "AUDIO block before the system prompt, or twice")
                if not body.get("interactive") or role != "USER":
                    fail(i, "AUDIO block must be interactive USER")
                audio_name = body["contentName"]
                phase = "audio"
            elif kind == "TEXT":
                if phase == "system":
                    if role != "SYSTEM" or body.get("interactive"):
                        fail(i, "first block must be the non-interactive SYSTEM prompt")
                    phase = "history"
                elif phase == "history":
                    if body.get("interactive") or role not in ("USER", "ASSISTANT"):
                        fail(i, "history blocks are non-interactive USER/ASSISTANT text")
                    if last_history_role is None and role != "USER":
                        fail(i, "first history message must be from the USER")
                    if role == last_history_role:
                        fail(i, "history roles must alternate")
                    last_history_role = role
                elif phase == "audio":
                    if not body.get("interactive") or role != "USER":
                        fail(i, "after audio starts, only interactive USER text is allowed")
                    if nova1:
                        fail(i, "Nova Sonic 1 does not take interactive text")
                else:
                    fail(i, "text block while closing")
            elif kind == "TOOL":
                if phase != "audio":
                    fail(i, "tool results go inside the open audio session")
            else:
                fail(i, f"unknown block type {kind}")
            if kind != "AUDIO":
                open_block = body
                block_payloads = 0
        elif name in ("textInput", "toolResult"):
            if open_block is None or body["contentName"] != open_block["contentName"]:
                fail(i, f"{name} outside its block")
            if (name == "toolResult") != (open_block["type"] == "TOOL"):
                fail(i, f"{name} in a {open_block['type']} block")
            block_payloads += 1
        elif name == "audioInput":
            if phase != "audio" or body["contentName"] != audio_name:
                fail(i, "audioInput outside the audio block")
            if open_block is not None:
                fail(i, "audioInput inside an open text or tool block")
            try:
                raw = base64.b64decode(body["content"], validate=True)
            except binascii.Error:
                fail(i, "audio is not base64")
            if not raw or len(raw) % 2:
                fail(i, "audio is not whole PCM16 samples")
        elif name == "contentEnd":
            if open_block is not None and body["contentName"] == open_block["contentName"]:
                if block_payloads != 1:
                    fail(i, "a block needs exactly one payload event")
                open_block = None
            elif phase == "audio" and body["contentName"] == audio_name and open_block is None:
                phase = "closing"
            else:
                fail(i, "contentEnd for no open block")
        elif name == "promptEnd":
            if phase not in ("closing",) or open_block is not None:
                fail(i, "promptEnd before the audio block ended")
            phase = "prompt_ended"
        elif name == "sessionEnd":
            if phase != "prompt_ended":
                fail(i, "sessionEnd before promptEnd")
            phase = "done"
        else:
            fail(i, f"unexpected input event {name}")
        i += 1


def tool_use_ids_answered(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["event"]["contentStart"]["toolResultInputConfiguration"]["toolUseId"]
        for e in events
        if "contentStart" in e["event"] and e["event"]["contentStart"]["type"] == "TOOL"
    ]
