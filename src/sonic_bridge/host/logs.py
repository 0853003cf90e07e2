"""Routing the library's ``logging`` records into a host framework's logger (loguru for OpenAvatarChat).

The library only ever logs through ``logging.getLogger("sonic_bridge...")``; worker records arrive on
the host under ``sonic_bridge.worker.*``. A host that logs through loguru would otherwise see nothing
below WARNING, on bare stderr. Payloads (audio, credentials) are never in these records.
"""

from __future__ import annotations

import logging
from typing import Any

_LOGGER = "sonic_bridge"


class LoguruHandler(logging.Handler):
    """Hands each record to loguru with its level name, logger name and traceback kept."""

    def __init__(self, loguru_logger: Any) -> None:
        super().__init__()
        self._loguru = loguru_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            try:
                level: str | int = self._loguru.level(record.levelname).name
            except ValueError:  # a custom level loguru does not know: keep its number
                level = record.levelno
            self._loguru.opt(exception=record.exc_info).bind(logger_name=record.name).log(
                level, "{}: {}", record.name, record.getMessage()
            )
        except Exception:  # a log line must never break the host
            self.handleError(record)


def route_to_loguru(level: int = logging.INFO) -> bool:
    """Send ``sonic_bridge`` logging to loguru when it is installed; True if routed. Idempotent.

    The records stop propagating to the root logger, so a host with both never sees a line twice.
    """
    try:
        from loguru import logger as loguru_logger
    except ImportError:
        return False
    target = logging.getLogger(_LOGGER)
    if not any(isinstance(h, LoguruHandler) for h in target.handlers):
        target.addHandler(LoguruHandler(loguru_logger))
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)
    target.propagate = False
    return True
