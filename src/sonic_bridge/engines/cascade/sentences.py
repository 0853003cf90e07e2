"""Streamed text cut into sentences for speech: Polly starts on the first sentence, not the whole answer.

Pure. A sentence ends at ``.``, ``!`` or ``?`` followed by a space (so "1.5" stays whole, and so does a common
abbreviation such as "e.g." or "Dr."), or at the full-width stops of Chinese and Japanese text, or at a line
break. Very long runs
without an end are cut at a comma or space past ``max_chars``, so the voice never waits for a paragraph.
"""

from __future__ import annotations

import re

_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？；])|\n+")  # noqa: RUF001
_SOFT = re.compile(r"[,，、:：;]\s*|\s+")  # noqa: RUF001
MIN_CHARS = 2
# A period after these is not the end of a sentence (lower case, without their final period).
ABBREVIATIONS = frozenset({"e.g", "i.e", "mr", "mrs", "ms", "dr", "prof", "st", "vs", "approx", "fig"})
_LAST_WORD = re.compile(r"([\w.]+)\.[\"')\]]*$")


class SentenceSplitter:
    def __init__(self, max_chars: int = 300) -> None:
        self.max_chars = max_chars
        self._buf = ""

    def feed(self, text: str) -> list[str]:
        """Complete sentences in the text so far (the rest waits for more)."""
        self._buf += text
        out: list[str] = []
        while True:
            found = next((m for m in _END.finditer(self._buf)
                          if m.end() >= MIN_CHARS and self._buf[: m.start()].strip()
                          and not _abbreviation(self._buf[: m.start()])), None)
            if found is None:
                break
            out.append(self._buf[: found.end()].strip())
            self._buf = self._buf[found.end():]
        while len(self._buf) > self.max_chars:
            cuts = [m.end() for m in _SOFT.finditer(self._buf, 0, self.max_chars)]
            cut = cuts[-1] if cuts else self.max_chars
            out.append(self._buf[:cut].strip())
            self._buf = self._buf[cut:]
        return [s for s in out if s]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []


def _abbreviation(before: str) -> bool:
    """The text up to a possible sentence end finishes with an abbreviation's period."""
    word = _LAST_WORD.search(before[-20:])
    return word is not None and word.group(1).lower() in ABBREVIATIONS
