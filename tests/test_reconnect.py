"""Reconnects are bounded: a service that accepts and then fails every stream is given up on.

Also: the direct fake door reports a failed stream exactly as the SDK door does (a fatal service error
stays fatal, however the writer and the reader race), so tests on the fast door see what users see.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, errors
from sonic_bridge import events as ev
from sonic_bridge.engines.failures import BackendError
from sonic_bridge.engines.sonic.backends.base import Backend
from sonic_bridge.engines.sonic.protocol import SonicSession
from sonic_bridge.engines.sonic.session_manager import FailureBudget, _as_backend_error
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until

DOORS = ["direct", pytest.param("sdk", marks=pytest.mark.sdk)]


def _scenario(tmp: Path, **data: object) -> str:
    path = tmp / "scenario.json"
    path.write_text(json.dumps({"seed": 9, **data}))
    return str(path)


def _door(door: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    if door == "sdk":
        pytest.importorskip("aws_sdk_bedrock_runtime")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    return door == "sdk"


@pytest.mark.parametrize("door", DOORS)
def test_a_service_that_accepts_then_fails_every_stream_is_given_up_after_max_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, door: str
) -> None:
    # Every stream is accepted, then ended 0.3 s later with a recoverable error (the silence limit).
    scenario = _scenario(tmp_path, silence_limit_s=0.3)
    config = BridgeConfig(max_reconnects=2,
                          fake=FakeOptions(scenario=scenario, via_sdk=_door(door, monkeypatch)))
    with SonicBridge(config) as bridge:
        events = run_until(bridge, has_state(ev.BridgeState.CLOSED), timeout=30)
    states = [e.state for e in events if isinstance(e, ev.StateChanged)]
    errors_seen = [e for e in events if isinstance(e, ev.Error)]
    assert states.count(ev.BridgeState.RECONNECTING) == 2, states
    assert [e.recoverable for e in errors_seen] == [True, True, False], errors_seen
    assert errors_seen[-1].code == errors.RECONNECT_LIMIT
    assert "gave up after 2 reconnects" in errors_seen[-1].message
    assert "InternalErrorCode=531" in errors_seen[-1].message  # the cause is named


def test_faults_between_answered_turns_do_not_use_up_the_reconnect_budget(tmp_path: Path) -> None:
    # Turns 1 and 3 fail mid-reply; each is asked again on the new stream (turns 2 and 4) and answered.
    scenario = _scenario(tmp_path, turns=[{"fault": "model_stream_error"}, {}, {"fault": "model_stream_error"}, {}])
    config = BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH"), max_reconnects=1,
                          fake=FakeOptions(time_scale=0.5, scenario=scenario))
    every: list[ev.Event] = []
    with SonicBridge(config) as bridge:
        every += run_until(bridge, has_state(ev.BridgeState.READY))
        for _ in range(2):
            bridge.push_audio(tone16(0.6) + silence16(1.0), 16000)
            every += run_until(
                bridge, lambda es: any(isinstance(e, ev.TurnEnded) and e.stop_reason == "END_TURN" for e in es),
                timeout=20)
    states = [e.state for e in every if isinstance(e, ev.StateChanged)]
    assert states.count(ev.BridgeState.RECONNECTING) == 2, states
    assert all(e.recoverable for e in every if isinstance(e, ev.Error))


def test_the_failure_budget_counts_recent_failures_until_a_success() -> None:
    budget = FailureBudget(window=60.0)
    assert [budget.fail(t) for t in (0.0, 1.0, 2.0)] == [1, 2, 3]
    budget.succeeded()
    assert budget.fail(3.0) == 1
    assert budget.fail(100.0) == 1  # the one at 3 s is too old to be related
    assert budget.fail(130.0) == 2


# ------------------------------------------------------------------ the doors classify alike
async def _first_failure(backend: Backend) -> BackendError:
    """What a session manager sees when an input event is refused: the first failure of writer or reader."""
    session = SonicSession(SessionSettings())
    stream = await backend.open(session.settings)
    failed: asyncio.Future[BackendError] = asyncio.get_running_loop().create_future()

    def fail(exc: BaseException) -> None:
        if not failed.done():
            failed.set_result(_as_backend_error(exc, "io"))

    async def reader() -> None:
        try:
            while await stream.receive() is not None:
                pass
        except (BackendError, OSError) as exc:
            fail(exc)

    async def writer() -> None:
        refused: dict[str, Any] = {"event": {"contentStart": {
            "promptName": session.prompt_name, "contentName": "c-1", "type": "TOOL", "role": "TOOL",
            "interactive": False, "toolResultInputConfiguration": {"toolUseId": "never-asked", "type": "TEXT"}}}}
        try:
            for event in session.start() + [refused]:
                await stream.send(json.dumps(event))
            for _ in range(200):  # the writer goes on with the user's audio, as the runner's does
                for event in session.audio(silence16(0.02)):
                    await stream.send(json.dumps(event))
                await asyncio.sleep(0.005)
        except (BackendError, OSError) as exc:
            fail(exc)

    tasks = [asyncio.create_task(reader()), asyncio.create_task(writer())]
    try:
        return await asyncio.wait_for(failed, 10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await stream.aclose()
        await backend.aclose()


@pytest.mark.parametrize("door", DOORS)
def test_a_refused_input_event_is_fatal_through_either_door(door: str, monkeypatch: pytest.MonkeyPatch) -> None:
    options = FakeOptions()
    backend: Backend
    if _door(door, monkeypatch):
        from sonic_bridge.engines.sonic.backends.aws import AwsBackend
        from sonic_bridge.fake.sdk_transport import fake_sdk_transport

        backend = AwsBackend(BridgeConfig(fake=options), transport_factory=lambda: fake_sdk_transport(options))
    else:
        from sonic_bridge.fake.direct import FakeDirectBackend

        backend = FakeDirectBackend(options)
    error = asyncio.run(_first_failure(backend))
    assert (error.code, error.recoverable, error.kind) == (errors.SERVICE_FATAL, False, "ValidationException"), (
        error.message)
