"""Conversation history: what a renewed stream or a restarted worker replays, and how it is trimmed.

Nova Sonic accepts history as USER/ASSISTANT text blocks only, the first from the USER. Tool calls and
results are kept as bracketed ASSISTANT lines so that a replay still tells the model what happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sonic_bridge.events import Role

MAX_MESSAGE_BYTES = 50_000
MAX_TOTAL_BYTES = 200_000


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise ValueError(f"a history message's role must be Role.USER or Role.ASSISTANT, got {self.role!r:.80}")
        if not isinstance(self.text, str):
            raise ValueError(f"a history message's text must be a string, got {type(self.text).__name__}")

    def to_json(self) -> dict[str, str]:
        return {"role": self.role.value, "text": self.text}

    @classmethod
    def from_json(cls, raw: Any) -> Message:
        if not isinstance(raw, dict) or set(raw) != {"role", "text"}:
            raise ValueError(f"a history message must be {{'role': ..., 'text': ...}}, got {raw!r}")
        try:
            role = Role(raw["role"])
        except ValueError:
            raise ValueError(f"history role must be USER or ASSISTANT, got {raw['role']!r}") from None
        if not isinstance(raw["text"], str):
            raise ValueError(f"history text must be a string, got {type(raw['text']).__name__}")
        return cls(role, raw["text"])


def tool_call_line(name: str, arguments: dict[str, Any]) -> str:
    return f"[tool call {name} {json.dumps(arguments, sort_keys=True)}]"


def tool_result_line(tool_use_id: str, content: str) -> str:
    return f"[tool result {tool_use_id}: {content}]"


def _tail_utf8(text: str, limit: int) -> str:
    """The last ``limit`` bytes of ``text``, cut on a character boundary (the recent part matters)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[-limit:].decode("utf-8", errors="ignore")


def sanitize(
    messages: Iterable[Message],
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> list[Message]:
    """History the service accepts: same-role messages merged, each message and the total capped
    (oldest dropped first), and the first message from the USER."""
    merged: list[Message] = []
    for message in messages:
        text = message.text.strip()
        if not text:
            continue
        if merged and merged[-1].role is message.role:
            merged[-1] = Message(message.role, merged[-1].text + "\n" + text)
        else:
            merged.append(Message(message.role, text))
    capped = [Message(m.role, _tail_utf8(m.text, max_message_bytes)) for m in merged]
    total = sum(len(m.text.encode()) for m in capped)
    while capped and total > max_total_bytes:
        total -= len(capped.pop(0).text.encode())
    while capped and capped[0].role is not Role.USER:
        capped.pop(0)
    return capped
