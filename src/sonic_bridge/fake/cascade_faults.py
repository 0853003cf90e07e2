"""The faults a scenario can plan for the cascade's fakes (kept apart so that the scenario loads without numpy)."""

from __future__ import annotations

TRANSCRIBE_FAULTS = ("internal_failure", "limit_exceeded", "service_unavailable", "disconnect")
POLLY_FAULTS = ("throttle", "service_failure")


def check_faults(transcribe: tuple[str | None, ...], polly: tuple[str | None, ...]) -> None:
    for name, planned, allowed in (("transcribe_faults", transcribe, TRANSCRIBE_FAULTS),
                                   ("polly_faults", polly, POLLY_FAULTS)):
        if not isinstance(planned, tuple):
            raise ValueError(f"{name} must be a list of faults, got {planned!r:.80}")
        for i, fault in enumerate(planned):
            if fault is not None and fault not in allowed:
                raise ValueError(f"{name}[{i}] must be one of {allowed} or null, got {fault!r:.80}")
