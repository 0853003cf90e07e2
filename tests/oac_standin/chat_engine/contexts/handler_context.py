from __future__ import annotations

from collections.abc import Callable
from typing import Any


class HandlerContext:
    """Classic engine: submit_data(data) only."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.owner: str | None = None
        self.data_submitter: Callable[..., None] | None = None

    def submit_data(self, data: Any) -> None:
        assert self.data_submitter is not None, "submit_data before the session started"
        self.data_submitter(data, None)
