"""Captions in step with the voice: the assistant's words spread over the reply audio that speaks them.

Nova Sonic gives no word timestamps: it sends each sentence as a SPECULATIVE text block just before the AUDIO
block that speaks it. So every audio chunk gets the words estimated to *start* within it, at a speaking rate
learned from the blocks heard so far (characters per second of audio), never splitting a word; whatever
the estimate left over when the block ends travels with the block's last chunk. Concatenating the ``text``
of a response's chunks gives its spoken text, up to where the audio stopped.

Pure: no clocks (durations are audio durations), tested by plain calls.
"""

from __future__ import annotations

START_RATE = 15.0  # characters per second of speech (about 150 words a minute) until blocks teach better
RATE_RANGE = (6.0, 40.0)  # a learned rate stays within this (a block of silence must not teach nonsense)
LEARN = 0.3  # weight of each finished block in the learned rate
MIN_LEARN_SECONDS = 0.5  # shorter blocks say little about the rate


class Captioner:
    def __init__(self, rate: float = START_RATE) -> None:
        self.rate = rate
        self._queued: list[str] = []  # sentences announced for audio that has not started yet
        self._block = ""  # the text the current audio block speaks
        self._given = 0  # characters of _block already handed out
        self._seconds = 0.0  # audio of the current block so far
        self.offset = 0  # characters handed out in this response (the next chunk's text starts here)
        self._last = ""  # the last character handed out, to join sentences with a space

    def sentence(self, text: str) -> None:
        """A SPECULATIVE assistant text block: what the next audio block will say."""
        if text.strip():
            self._queued.append(text.strip())

    def block_start(self) -> None:
        """An assistant AUDIO block begins: it speaks the sentences announced since the last one."""
        self._block = " ".join(self._queued)
        self._queued.clear()
        if self._block and self._last and not self._last.isspace():
            self._block = " " + self._block  # the next sentence of the same response
        self._given = 0
        self._seconds = 0.0

    def chunk(self, seconds: float) -> str:
        """Text for the next audio chunk of this duration: every word that starts before the chunk ends."""
        self._seconds += max(0.0, seconds)
        target = int(self.rate * self._seconds)
        if target >= len(self._block):
            end = len(self._block)
        elif target <= self._given:
            return ""
        else:
            space = self._block.find(" ", target)
            end = len(self._block) if space < 0 else space + 1
        return self._take(end)

    def block_end(self) -> str:
        """The block is over: the rest of its text (the estimate's error) goes with its last chunk."""
        blocks_text = len(self._block.strip())
        if self._seconds >= MIN_LEARN_SECONDS and blocks_text:
            observed = min(max(blocks_text / self._seconds, RATE_RANGE[0]), RATE_RANGE[1])
            self.rate += LEARN * (observed - self.rate)
        rest = self._take(len(self._block))
        self._block, self._given, self._seconds = "", 0, 0.0
        return rest

    def end_response(self) -> None:
        """The response ended or was cut off: nothing of it is said any more; the next starts at offset 0."""
        self._queued.clear()
        self._block, self._given, self._seconds = "", 0, 0.0
        self.offset = 0
        self._last = ""

    def _take(self, end: int) -> str:
        text = self._block[self._given : end]
        self._given = max(self._given, end)
        self.offset += len(text)
        if text:
            self._last = text[-1]
        return text
