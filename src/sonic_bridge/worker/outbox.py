"""The worker's side of the worker -> host ring: what the host must see is never lost to a full ring.

Reply audio and log lines go to the ring now or are dropped (counted, and reported by a Warning that
takes its place in the stream). Every other message (tool calls, turn ends, states, errors,
transcripts, usage, the audio tally) that does not fit now waits in a bounded backlog that is written,
in order, at the next send or heartbeat. While anything waits, no audio is written ahead of it, so the
host sees events in the order they happened, minus dropped audio.

Nothing is too large to send: audio over the ring's message limit is split into pieces, text is cut
(with a Warning), and what cannot be cut (a tool call) is refused with a Warning that names it.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import logging
import os
import sys
import time
from typing import Any

from sonic_bridge import errors
from sonic_bridge import events as ev
from sonic_bridge.ipc import codec
from sonic_bridge.ipc import messages as msg
from sonic_bridge.ipc.ring import Doorbell, SharedRing

WorkerMessage = ev.Event | msg.LogLine | msg.AudioAccounted
# The outbox of the session whose task is running: a shared worker's log records go to that session's host.
CURRENT_OUTBOX: contextvars.ContextVar[Outbox | None] = contextvars.ContextVar("sonic_bridge_outbox", default=None)

BACKLOG_BYTES = 4 << 20  # control events kept for a host that does not poll (a few thousand turns' worth)
EXIT_FLUSH_SECONDS = 10.0  # the last messages wait this long at most for the host to make room
_AUDIO_HEADER = codec.AUDIO_OUT_HEADER  # codec's AudioOut header before the response id and caption
# The text field that may be cut when a message is too large; other messages are refused whole.
_CUTTABLE: dict[type[object], str] = {
    ev.Transcript: "text",
    ev.Error: "message",
    ev.Warning: "message",
    ev.StateChanged: "detail",
    msg.LogLine: "message",
    msg.AudioAccounted: "reason",
}


class Outbox:
    def __init__(self, ring: SharedRing, bell: Doorbell, *, backlog_limit: int = BACKLOG_BYTES,
                 exit_flush: bool = True) -> None:
        """``exit_flush``: CLOSED waits (blocking, bounded) for the backlog to leave, as the process exits next;
        a shared worker's sessions end without the process, and await ``settle`` instead."""
        self._exit_flush = exit_flush
        self._ring = ring
        self._bell = bell
        self._limit = backlog_limit
        # Encoded control messages not yet written, oldest first; the flag marks an audio tally.
        self._backlog: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._backlog_bytes = 0
        self.dropped = 0  # everything dropped, ever
        self._lost = {"audio": 0, "log": 0, "control": 0}  # dropped since the last Warning
        self._parent = os.getppid()

    @property
    def backlog(self) -> int:
        """Messages waiting for room in the ring."""
        return len(self._backlog)

    @property
    def max_message(self) -> int:
        """The largest encoded message the ring takes whole."""
        return self._ring.max_message()

    def fits(self, value: WorkerMessage) -> bool:
        """Whether ``value`` crosses the ring whole (audio always does: it is split)."""
        return isinstance(value, ev.AudioOut) or len(codec.encode(value)) <= self._ring.max_message()

    def send(self, value: WorkerMessage) -> bool:
        """True when written or queued to be written in order; False when dropped (counted and reported)."""
        self.flush()
        if isinstance(value, ev.AudioOut):
            return self._send_audio(value)
        data, warning = self._fit(value)
        if isinstance(value, msg.LogLine):
            return self._send_droppable(data, "log")
        kept = data is not None and self._control(data, accounting=isinstance(value, msg.AudioAccounted))
        if warning is not None:
            self._control(codec.encode(warning))
        if self._exit_flush and isinstance(value, ev.StateChanged) and value.state is ev.BridgeState.CLOSED:
            self.flush_before_exit()  # nothing follows CLOSED: the worker exits next
        return kept

    def flush(self) -> bool:
        """Write what waits, in order; True when nothing waits any more."""
        if any(self._lost.values()) and not self._write(codec.encode(self._loss_warning())):
            return False
        self._lost = dict.fromkeys(self._lost, 0)
        while self._backlog:
            data, _ = self._backlog[0]
            if not self._write(data):
                return False
            self._backlog.popleft()
            self._backlog_bytes -= len(data)
        return True

    def flush_before_exit(self, timeout: float = EXIT_FLUSH_SECONDS) -> bool:
        """Wait (bounded, beating the heartbeat) until the host took the backlog or is gone."""
        deadline = time.monotonic() + timeout
        while not self.flush():
            if time.monotonic() > deadline or os.getppid() != self._parent:
                return False
            self._ring.beat()
            time.sleep(0.005)
        return True

    async def settle(self, timeout: float = EXIT_FLUSH_SECONDS) -> bool:
        """Like flush_before_exit, without blocking the loop the process's other sessions run on."""
        deadline = time.monotonic() + timeout
        while not self.flush():
            if time.monotonic() > deadline or os.getppid() != self._parent:
                return False
            self._ring.beat()
            await asyncio.sleep(0.005)
        return True

    def beat(self) -> None:
        """Heartbeat; also retries the backlog, so it drains as soon as the host makes room."""
        self._ring.beat()
        self.flush()

    # ------------------------------------------------------------------ internals
    def _send_audio(self, value: ev.AudioOut) -> bool:
        budget = self._ring.max_message() // 2  # a caption takes at most half a message: the audio needs room
        if value.text and len(caption := value.text.encode()) > budget:
            kept = caption[:budget].decode(errors="ignore")
            self._control(codec.encode(ev.Warning(
                errors.WORKER_MESSAGE_TOO_LARGE,
                f"the caption of a reply audio chunk ({len(caption)} bytes) was cut to {len(kept.encode())} bytes "
                f"to fit the worker->host ring; raise outbound_capacity to get it whole")))
            value = dataclasses.replace(value, text=kept)
        pieces = self._split(value)
        if self._backlog or any(self._lost.values()):
            return self._lose("audio", len(pieces))  # audio must not overtake what waits
        for n, piece in enumerate(pieces):
            if not self._write(codec.encode(piece)):
                return self._lose("audio", len(pieces) - n)
        return True

    def _send_droppable(self, data: bytes | None, kind: str) -> bool:
        if data is None or self._backlog or any(self._lost.values()) or not self._write(data):
            return self._lose(kind, 1)
        return True

    def _control(self, data: bytes, *, accounting: bool = False) -> bool:
        if accounting and self._backlog:  # only the latest tally matters
            old = [item for item in self._backlog if item[1]]
            for item in old:
                self._backlog.remove(item)
                self._backlog_bytes -= len(item[0])
        if not self._backlog and not any(self._lost.values()) and self._write(data):
            return True
        if self._backlog_bytes + len(data) > self._limit:
            return self._lose("control", 1)
        self._backlog.append((data, accounting))
        self._backlog_bytes += len(data)
        return True

    def _lose(self, kind: str, count: int) -> bool:
        self.dropped += count
        self._lost[kind] += count
        return False

    def _loss_warning(self) -> ev.Warning:
        names = {"audio": "reply audio chunks", "log": "worker log lines",
                 "control": f"control events (the {self._limit}-byte backlog was full)"}
        parts = [f"{n} {names[k]}" for k, n in self._lost.items() if n]
        return ev.Warning(errors.WORKER_RING_FULL, "the host did not poll in time: " + " and ".join(parts)
                          + " were dropped", sum(self._lost.values()))

    def _write(self, data: bytes) -> bool:
        if not self._ring.try_write(data):
            return False
        self._bell.ring()
        return True

    def _split(self, value: ev.AudioOut) -> list[ev.AudioOut]:
        """Pieces that each fit the ring (a quarter of it at most, so bursts pack well)."""
        limit = self._ring.max_message()
        head = _AUDIO_HEADER + len(value.response_id.encode()) + (len(value.text.encode()) if value.text else 0)
        if head + len(value.pcm) <= limit:  # measured, not encoded: audio is the hot path
            return [value]
        width = value.sample_format.width
        room = min(limit, self._ring.capacity // 4) - head
        step = max(width, room - room % width)
        # The caption goes with the first piece: it starts playing when the chunk does.
        after = dataclasses.replace(value, text="", text_offset=value.text_offset + len(value.text))
        return [dataclasses.replace(value if i == 0 else after, pcm=value.pcm[i : i + step])
                for i in range(0, len(value.pcm), step)]

    def _fit(self, value: WorkerMessage) -> tuple[bytes | None, ev.Warning | None]:
        """The encoded message, cut to the ring's limit if need be, and a Warning when it was cut or refused."""
        data = codec.encode(value)
        limit = self._ring.max_message()
        if len(data) <= limit:
            return data, None
        what = _describe(value)
        advice = "raise outbound_capacity to get it whole"
        field = _CUTTABLE.get(type(value))
        if field is not None:
            text: str = getattr(value, field)
            raw = text.encode()
            keep = len(raw) - (len(data) - limit) - 40  # room for the marker
            if keep >= 0:
                marker = f" [{len(raw) - keep} bytes cut]"
                cuttable: Any = value  # one of _CUTTABLE's dataclasses, whose ``field`` is a str
                cut = dataclasses.replace(cuttable, **{field: raw[:keep].decode(errors="ignore") + marker})
                short = codec.encode(cut)
                if len(short) <= limit:
                    if isinstance(value, msg.LogLine):
                        return short, None  # the marker says it; a warning about a log line is noise
                    return short, ev.Warning(
                        errors.WORKER_MESSAGE_TOO_LARGE,
                        f"{what} of {len(data)} bytes was cut to fit the worker->host ring "
                        f"(at most {limit} bytes per message); {advice}")
        return None, ev.Warning(
            errors.WORKER_MESSAGE_TOO_LARGE,
            f"{what} of {len(data)} bytes cannot cross the worker->host ring (at most {limit} bytes per "
            f"message) and was not delivered; {advice}")


def _describe(value: WorkerMessage) -> str:
    if isinstance(value, ev.ToolCall):
        return f"the tool call {value.name!r} ({value.tool_use_id})"
    return f"a {type(value).__name__}"


class RingLogHandler(logging.Handler):
    """Worker log records travel to the host through the ring, never through inherited stderr."""

    def __init__(self, outbox: Outbox | None) -> None:
        """``outbox``: where records go that no session's task logged (None: the worker's stderr, which the
        host keeps for the report of a worker's death)."""
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            outbox = CURRENT_OUTBOX.get() or self._outbox
            if outbox is None:
                sys.stderr.write(f"{record.levelname} {record.name}: {text}\n")
                return
            outbox.send(msg.LogLine(record.levelno, record.name, text))
        except Exception:  # a log record must never take the worker down
            self.handleError(record)
