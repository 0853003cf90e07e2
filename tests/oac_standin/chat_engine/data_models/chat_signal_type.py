from __future__ import annotations

from enum import Enum


class ChatSignalType(Enum):
    BEGIN = "begin"
    END = "end"
    INTERRUPT = "interrupt"


class ChatSignalSourceType(Enum):
    CLIENT = "client"
    LOGIC = "logic"
    HANDLER = "handler"
