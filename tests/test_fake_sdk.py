"""Door 1: the unmodified AWS SDK talks to the fake Sonic through the in-process transport."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
import soxr

from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.protocol import SonicSession
from sonic_bridge.fake.scenario import Scenario, TurnPlan
from sonic_bridge.settings import SessionSettings, Tool
from tests.fake_driver import silence16, tone16
from tests.ordering_checker import check_input_sequence

pytest.importorskip("aws_sdk_bedrock_runtime")
pytestmark = pytest.mark.sdk
WEATHER = Tool("get_weather", "Get the weather", {"type": "object", "properties": {"city": {"type": "string"}}})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def stream_audio(conv: Any, session: SonicSession, sent: list[dict[str, Any]], pcm: bytes) -> None:
    for i in range(0, len(pcm), 640):
        batch = session.audio(pcm[i : i + 640])
        sent += batch
        await conv.send(batch)
        await asyncio.sleep(0.02)


SCENARIO = Scenario(seed=4, time_scale=0.3, speed=0.3,  # real-time reply pace, so the barge-in lands
                    turns=(TurnPlan(), TurnPlan(), TurnPlan(tool="get_weather", arguments={"city": "Oslo"})))


@pytest.mark.parametrize("door", ["in-process", "tls-server"])
def test_a_full_conversation_through_the_real_sdk(door: str, tmp_path: Any) -> None:
    import contextlib
    from pathlib import Path

    from tests.fake_server import fake_server
    from tests.sdk_driver import SdkConversation

    with contextlib.ExitStack() as stack:
        if door == "in-process":
            open_conversation = lambda: SdkConversation(SCENARIO)  # noqa: E731
        else:
            scenario_path = Path(str(tmp_path)) / "scenario.json"
            scenario_path.write_text(json.dumps({"seed": 4, "time_scale": 0.3, "speed": 0.3, "turns": [
                {}, {}, {"tool": "get_weather", "arguments": {"city": "Oslo"}}]}))
            server = stack.enter_context(fake_server(Path(str(tmp_path)), "--scenario", str(scenario_path),
                                                     "--verify-secret", "secret"))
            open_conversation = lambda: SdkConversation(None, endpoint=server.url, ca_file=server.ca)  # noqa: E731
        _conversation(open_conversation)


def _conversation(open_conversation: Any) -> None:
    async def main() -> tuple[list[dict[str, Any]], list[ev.Event], list[dict[str, Any]], bytes]:
        settings = SessionSettings(system_prompt="Be brief.", tools=(WEATHER,), turn_sensitivity="HIGH")
        session = SonicSession(settings)
        sent: list[dict[str, Any]] = []
        host: list[ev.Event] = []
        first_utterance = tone16(0.8, freq=260)
        async with open_conversation() as conv:
            sent += session.start()
            await conv.send(sent)
            await conv.wait_for("completionStart")
            await stream_audio(conv, session, sent, first_utterance + silence16(0.6))
            await conv.wait_for("usageEvent", 1)
            await stream_audio(conv, session, sent, tone16(1.5) + silence16(0.6))  # turn 2
            await stream_audio(conv, session, sent, silence16(0.35))  # its reply starts at real-time pace
            await stream_audio(conv, session, sent, tone16(0.5, freq=500) + silence16(0.6))  # barge-in = turn 3
            await conv.wait_for("toolUse", 1)
            for raw in conv.outputs:
                host.extend(session.receive(raw))
            call = next(e for e in host if isinstance(e, ev.ToolCall))
            batch = session.tool_result(call.tool_use_id, {"temp": 3})
            sent += batch
            await conv.send(batch)
            await conv.wait_for("usageEvent", 2)  # the interrupted reply sends no usage
            await stream_audio(conv, session, sent, silence16(0.2))
            closing = session.close()
            sent += closing
            await conv.send(closing)
        host = []
        checker_session = SonicSession(settings)
        checker_session.start()
        for raw in conv.outputs:
            host.extend(checker_session.receive(raw))
        assert conv.error is None, conv.error
        return sent, host, conv.outputs, first_utterance

    sent, host, outputs, first = run(main())
    check_input_sequence(sent)
    names = [next(iter(o["event"])) for o in outputs]
    assert names[0] == "completionStart" and names[-1] == "completionEnd"
    assert [e.text for e in host if isinstance(e, ev.Transcript) and e.role is ev.Role.USER] == [
        "turn 1: 0.8 seconds of speech", "turn 2: 1.5 seconds of speech", "turn 3: 0.5 seconds of speech"]
    assert ev.Interrupted("r2") in host and ev.TurnEnded("INTERRUPTED", "r2") in host
    assert 'The tool said: {"temp": 3}' in [e.text for e in host if isinstance(e, ev.Transcript)]
    # Reply 1 is the first utterance, echoed at 24 kHz.
    reply = np.concatenate([e.samples() for e in host if isinstance(e, ev.AudioOut) and e.response_id == "r1"])
    expected = soxr.resample(np.frombuffer(first, "<i2").astype(np.float32), 16000, 24000)
    n = min(len(reply), len(expected))
    assert np.corrcoef(reply[:n].astype(np.float32), expected[:n])[0, 1] > 0.95


def _expect_error(scenario: Scenario, feed: str, model_id: str = "amazon.nova-2-sonic-v1:0",
                  seconds: float = 4.0) -> BaseException:
    from tests.sdk_driver import SdkConversation

    async def main() -> BaseException | None:
        session = SonicSession(SessionSettings(model_id="amazon.nova-2-sonic-v1:0", turn_sensitivity="HIGH"))
        sent: list[dict[str, Any]] = []
        async with SdkConversation(scenario, model_id) as conv:
            try:
                await conv.send(session.start())
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while not conv.ended.is_set() and loop.time() < end:
                    if feed == "voice":
                        await stream_audio(conv, session, sent, tone16(0.3) + silence16(0.6))
                    elif feed == "silence":
                        await stream_audio(conv, session, sent, silence16(0.1))
                    else:
                        await asyncio.sleep(0.05)
            except OSError:
                pass  # writing after the service ended the stream
            await asyncio.wait_for(conv.ended.wait(), 5)
        return conv.error

    error = run(main())
    assert error is not None
    return error


@pytest.mark.parametrize(("scenario", "feed", "cls", "message"), [
    (Scenario(time_scale=0.004, silence_limit_s=1e6, input_timeout_s=1e6), "voice", "ModelTimeoutException",
     "Model has timed out"),
    (Scenario(time_scale=0.01, input_timeout_s=1e6), "silence", "ValidationException", "InternalErrorCode=531"),
    (Scenario(time_scale=0.02), "nothing", "ValidationException", "Timed out waiting for input events"),
    (Scenario(time_scale=0.3, turns=(TurnPlan(fault="model_stream_error"),)), "voice",
     "ModelStreamErrorException", "An error occurred while streaming"),
    (Scenario(time_scale=0.3, turns=(TurnPlan(fault="throttle"),)), "voice", "ThrottlingException", "Too many"),
])
def test_limits_and_faults_surface_as_the_services_exception_classes(
    scenario: Scenario, feed: str, cls: str, message: str
) -> None:
    from aws_sdk_bedrock_runtime import models

    error = _expect_error(scenario, feed)
    assert isinstance(error, getattr(models, cls)), repr(error)
    assert message in str(getattr(error, "message", error))


def test_a_truncated_frame_surfaces_as_invalid_event_bytes() -> None:
    error = _expect_error(Scenario(time_scale=0.3, turns=(TurnPlan(fault="truncated_frame"),)), "voice")
    assert type(error).__name__ in ("InvalidEventBytes", "ChecksumMismatch"), repr(error)


def test_http_errors_are_raised_from_await_output_as_modelled_exceptions() -> None:
    from aws_sdk_bedrock_runtime import models

    error = _expect_error(Scenario(), "nothing", model_id="amazon.titan-text-express-v1", seconds=1)
    assert isinstance(error, models.ValidationException) and "model identifier is invalid" in error.message
    error = _expect_error(Scenario(max_streams=0), "nothing", seconds=1)
    assert isinstance(error, models.ThrottlingException)


def test_the_sdk_frames_are_signed_in_a_chain() -> None:
    from tests.sdk_driver import SdkConversation

    async def main() -> list[bytes]:
        async with SdkConversation(Scenario()) as conv:
            session = SonicSession(SessionSettings())
            await conv.send(session.start() + session.close())
        return conv.transport.sessions[0].signatures

    signatures = run(main())
    assert len(signatures) >= 8 and all(len(s) == 32 for s in signatures)
    assert len(set(signatures)) == len(signatures)
