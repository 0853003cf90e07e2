"""The worker's side of the worker -> host ring: encodes, writes, counts what did not fit."""

from __future__ import annotations

import logging

from sonic_bridge import codec, errors
from sonic_bridge import events as ev
from sonic_bridge import messages as msg
from sonic_bridge.ring import Doorbell, SharedRing


class Outbox:
    def __init__(self, ring: SharedRing, bell: Doorbell) -> None:
        self._ring = ring
        self._bell = bell
        self.dropped = 0
        self._unreported = 0

    def send(self, value: ev.Event | msg.LogLine | msg.AudioAccounted) -> bool:
        if self._unreported and not self._write(
            codec.encode(
                ev.Warning(
                    errors.WORKER_RING_FULL,
                    "the host did not poll in time: worker events were dropped",
                    self._unreported,
                )
            )
        ):
            self._count_drop()
            return False
        self._unreported = 0
        if self._write(codec.encode(value)):
            return True
        self._count_drop()
        return False

    def _write(self, data: bytes) -> bool:
        if not self._ring.try_write(data):
            return False
        self._bell.ring()
        return True

    def _count_drop(self) -> None:
        self.dropped += 1
        self._unreported += 1

    def beat(self) -> None:
        self._ring.beat()


class RingLogHandler(logging.Handler):
    """Worker log records travel to the host through the ring, never through inherited stderr."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._outbox.send(msg.LogLine(record.levelno, record.name, text))
        except Exception:  # a log record must never take the worker down
            self.handleError(record)
