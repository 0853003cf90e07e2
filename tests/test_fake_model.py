"""The fake Sonic's behaviour, driven with a virtual clock through the real protocol session."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soxr

from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.history import Message
from sonic_bridge.fake.model import END, FakeError, FakeSonic
from sonic_bridge.fake.scenario import Scenario, TurnPlan
from sonic_bridge.settings import SessionSettings, Tool
from tests.fake_driver import Run, silence16, tone16
from tests.ordering_checker import check_input_sequence

NOVA1 = "amazon.nova-sonic-v1:0"


def errors_of(run: Run) -> list[FakeError]:
    return [o for o in run.raw if isinstance(o, FakeError)]


def test_a_spoken_turn_gets_the_documented_response_with_the_voice_echoed() -> None:
    run = Run()
    run.send(run.session.start())
    run.advance(0.2)
    assert run.names()[0] == "completionStart"
    utterance = tone16(1.0)
    run.stream_audio(silence16(0.3) + utterance + silence16(1.6))  # HIGH: 1.5 s pause ends the turn
    run.advance(1.5)
    user = [e for e in run.events if isinstance(e, ev.Transcript) and e.role is ev.Role.USER]
    assert user == [ev.Transcript(ev.Role.USER, ev.Stage.FINAL, "turn 1: 1.0 seconds of speech", 1)]
    texts = [(e.stage, e.text) for e in run.events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT]
    assert texts == [
        (ev.Stage.SPECULATIVE, "You spoke for 1.0 seconds in turn 1."),
        (ev.Stage.FINAL, "You spoke for 1.0 seconds in turn 1."),
    ]
    assert ev.TurnEnded("END_TURN", "r1") in run.events
    assert any(isinstance(e, ev.Usage) and e.total.output_speech > 0 for e in run.events)
    # The reply is the user's own utterance at 24 kHz: correlate it with the input.
    reply = run.reply_audio().astype(np.float32) / 32767
    expected = soxr.resample(np.frombuffer(utterance, "<i2").astype(np.float32) / 32767, 16000, 24000)
    n = min(len(reply), len(expected))
    assert abs(n - len(expected)) < 2400
    corr = np.corrcoef(reply[:n], expected[:n])[0, 1]
    assert corr > 0.95
    order = [n for n in run.names() if n in ("contentStart", "audioOutput", "contentEnd")]
    assert order.index("audioOutput") > 4


def test_reply_audio_arrives_faster_than_real_time_after_the_thinking_delay() -> None:
    run = Run(scenario=Scenario(seed=3, thinking_ms=(500, 500)))
    run.send(run.session.start())
    run.stream_audio(tone16(2.0) + silence16(1.5))
    end_of_turn = run.now
    run.advance(0.45)  # the turn ended when the last chunk was fed, 20 ms before `end_of_turn`
    assert not any(isinstance(e, ev.AudioOut) for e in run.events)
    run.advance(0.6)  # 2 s of reply at 4x real time takes 0.5 s
    assert abs(len(run.reply_audio()) / 24000 - 2.0) < 0.1
    assert run.now - end_of_turn < 1.2


def test_barge_in_cuts_the_reply_and_the_new_turn_is_heard() -> None:
    run = Run(scenario=Scenario(seed=1, speed=1.0))
    run.send(run.session.start())
    run.stream_audio(tone16(3.0) + silence16(1.5))
    run.stream_audio(silence16(0.8))  # reply starts (thinking <= 0.7 s), real-time pace
    assert run.model.speaking
    run.stream_audio(tone16(0.6, freq=500) + silence16(1.6))
    assert ev.Interrupted("r1") in run.events
    assert ev.TurnEnded("INTERRUPTED", "r1") in run.events
    assert len(run.reply_audio("r1")) < 2.0 * 24000  # cut short
    names = run.names()
    cut = names.index("contentEnd", names.index("audioOutput"))
    assert json.loads(json.dumps(run.raw[cut]))["event"]["contentEnd"]["type"] == "AUDIO"
    run.advance(2.0)
    assert ev.TurnEnded("END_TURN", "r2") in run.events  # the interrupting speech got its own answer


def test_tool_round_trip_waits_for_the_result_and_answers_with_it() -> None:
    weather = Tool("get_weather", "weather", {"type": "object"})
    run = Run(
        SessionSettings(tools=(weather,)),
        Scenario(seed=2, turns=(TurnPlan(tool="get_weather", arguments={"city": "Oslo"}),)),
    )
    run.send(run.session.start())
    run.stream_audio(tone16(1.0) + silence16(1.8))
    run.advance(1.0)
    (call,) = [e for e in run.events if isinstance(e, ev.ToolCall)]
    assert call.name == "get_weather" and call.arguments == {"city": "Oslo"}
    assert not any(isinstance(e, ev.AudioOut) for e in run.events)  # the model waits for the result
    run.send(run.session.tool_result(call.tool_use_id, {"temp": 3}))
    run.advance(1.5)
    finals = [
        e.text
        for e in run.events
        if isinstance(e, ev.Transcript) and e.stage is ev.Stage.FINAL and e.role is ev.Role.ASSISTANT
    ]
    assert finals == ['The tool said: {"temp": 3}']


def test_interactive_text_answers_on_nova2_but_not_on_nova1() -> None:
    run = Run()
    run.send(run.session.start())
    run.send(run.session.text("hello"))
    run.advance(1.0)
    assert any(isinstance(e, ev.AudioOut) for e in run.events)


def test_a_typed_turn_gets_a_reply_echoing_its_words_and_no_user_transcript() -> None:
    # The USER text block is the transcript of speech: typed text is not sent back (a client that shows
    # or keeps its own typed message would hold it twice); the reply echoes the words as a voice reply
    # echoes the voice: its text quotes them, its audio "spells" them (one 60 ms tone per character).
    run = Run()
    run.send(run.session.start())
    run.send(run.session.text("hello there"))
    run.advance(2.0)
    transcripts = [e for e in run.events if isinstance(e, ev.Transcript)]
    assert [e.role for e in transcripts] == [ev.Role.ASSISTANT, ev.Role.ASSISTANT]
    assert [(e.stage, e.text) for e in transcripts] == [
        (ev.Stage.SPECULATIVE, 'You wrote "hello there" in turn 1.'),
        (ev.Stage.FINAL, 'You wrote "hello there" in turn 1.')]
    assert ev.TurnEnded("END_TURN", "r1") in run.events
    assert abs(len(run.reply_audio()) / 24000 - 11 * 0.06) < 0.02  # 11 characters, not a fixed 0.6 s tone
    # A second typed turn is turn 2, and a longer text gives a longer reply.
    run.send(run.session.text("and a much longer second message"))
    run.advance(3.0)
    finals = [e.text for e in run.events if isinstance(e, ev.Transcript) and e.stage is ev.Stage.FINAL]
    assert finals[-1] == 'You wrote "and a much longer second message" in turn 2.'


def test_a_typed_turn_keeps_its_scenario_plan() -> None:
    weather = Tool("get_weather", "Get the weather", {"type": "object"})
    run = Run(SessionSettings(tools=(weather,)), Scenario(seed=2, turns=(TurnPlan(tool="get_weather"),)))
    run.send(run.session.start())
    run.send(run.session.text("weather in Oslo?"))
    run.advance(1.0)
    (call,) = [e for e in run.events if isinstance(e, ev.ToolCall)]
    run.send(run.session.tool_result(call.tool_use_id, {"temp": 3}))
    run.advance(2.0)
    assert [e.text for e in run.events if isinstance(e, ev.Transcript) and e.stage is ev.Stage.FINAL] == [
        'The tool said: {"temp": 3}']


def test_a_content_block_larger_than_the_limit_is_refused_and_its_text_released() -> None:
    run = Run(scenario=Scenario(max_content_bytes=10_000))
    run.send(run.session.start())
    name = run.session.prompt_name
    run.send([{"event": {"contentStart": {
        "promptName": name, "contentName": "big", "type": "TEXT", "role": "USER", "interactive": True,
        "textInputConfiguration": {"mediaType": "text/plain"}}}}])
    piece = {"event": {"textInput": {"promptName": name, "contentName": "big", "content": "x" * 4000}}}
    run.send([piece, piece])
    assert run.model.buffered_input == 8000 and not errors_of(run)
    run.send([piece])
    run.advance(0.1)
    (error,) = errors_of(run)
    assert error.kind == "ValidationException" and "big" in error.message and "10000 bytes" in error.message
    run.send([piece] * 10)  # nothing more is held after the refusal
    assert run.model.buffered_input <= 8000


def test_a_text_block_is_released_at_its_content_end() -> None:
    run = Run(scenario=Scenario(max_content_bytes=10_000))
    run.send(run.session.start())
    for _ in range(5):  # five typed turns of 6 kB each: each block counts alone
        run.send(run.session.text("y" * 6000))
        assert run.model.buffered_input == 0
    assert not errors_of(run)


def test_a_long_turn_echoes_at_most_fifteen_seconds_and_says_how_long_it_was() -> None:
    from sonic_bridge.fake.model import ECHO_LIMIT_S

    run = Run()
    run.send(run.session.start())
    run.send(run.session.audio(tone16(40.0)))  # a flood: 40 s of speech in one go
    assert sum(len(f) for f in run.model._utterance) <= ECHO_LIMIT_S * 16000 + 160
    run.send(run.session.audio(silence16(1.6)))
    run.advance(8.0)
    user = [e.text for e in run.events if isinstance(e, ev.Transcript) and e.role is ev.Role.USER]
    assert user == ["turn 1: 40.0 seconds of speech"]
    assert abs(len(run.reply_audio()) / 24000 - ECHO_LIMIT_S) < 0.2


@pytest.mark.parametrize("event", [
    lambda p, a: ["not", "a", "mapping"],
    lambda p, a: {"event": {"textInput": "a string body"}},
    lambda p, a: {"event": {"audioInput": None}},
    lambda p, a: {"event": {"audioInput": {"promptName": p, "contentName": a, "content": ["AAAA"]}}},
    lambda p, a: {"event": {"contentEnd": {"promptName": p, "contentName": {"a": 1}}}},
    lambda p, a: {"event": {7: {}}},
], ids=["list", "string body", "null body", "audio content a list", "content name a mapping", "name a number"])
def test_an_event_of_any_shape_fails_only_its_stream_with_a_validation_exception(event: object) -> None:
    run = Run()
    run.send(run.session.start())
    run.advance(0.1)
    run.model.feed(event(run.session.prompt_name, run.session.audio_content_name), run.now)  # type: ignore[operator]
    (error, end) = run.model.pump(run.now)
    assert isinstance(error, FakeError) and error.kind == "ValidationException" and end == END
    quiet = Run(SessionSettings(model_id=NOVA1))
    prefix = quiet.session.start()
    name = quiet.session.prompt_name
    quiet.send(
        prefix
        + [
            {
                "event": {
                    "contentStart": {
                        "promptName": name,
                        "contentName": "t",
                        "type": "TEXT",
                        "role": "USER",
                        "interactive": True,
                        "textInputConfiguration": {"mediaType": "text/plain"},
                    }
                }
            },
            {"event": {"textInput": {"promptName": name, "contentName": "t", "content": "hello"}}},
            {"event": {"contentEnd": {"promptName": name, "contentName": "t"}}},
        ]
    )
    quiet.advance(2.0)
    assert not any(isinstance(e, ev.AudioOut | ev.Transcript) for e in quiet.events)
    assert not errors_of(quiet)


def _violation(mutate: object) -> FakeError:
    run = Run()
    events = run.session.start()
    events = mutate(events, run)  # type: ignore[operator]
    run.send(events)
    run.advance(0.1)
    (err,) = errors_of(run)
    assert run.raw[-1] == END
    return err


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda evs, run: evs + run.session._text_block("USER", "late history", interactive=False),
            "Chat history should be sent completely before streaming audio.",
        ),
        (
            lambda evs, run: evs + run.session.text("hi")[:1] + run.session.audio(b"\1\0" * 100),
            "Chat history should be sent completely before streaming audio.",
        ),
        (
            lambda evs, run: evs[:5] + run.session._text_block("ASSISTANT", "hi", interactive=False) + evs[5:],
            "first message in the chat history must be from the user",
        ),
        (
            lambda evs, run: (
                [evs[0], _with(evs[1], "promptStart", ["audioOutputConfiguration", "voiceId"], "zed")] + evs[2:]
            ),
            "Received invalid voiceId: zed",
        ),
        (
            lambda evs, run: [{"event": {"sessionStart": {"endpointingSensitivity": "HIGH"}}}] + evs[1:],
            "endpointingSensitivity",
        ),
        (
            lambda evs, run: (
                evs
                + [
                    {
                        "event": {
                            "contentStart": {
                                "promptName": run.session.prompt_name,
                                "contentName": "x",
                                "type": "TOOL",
                                "role": "TOOL",
                                "toolResultInputConfiguration": {"toolUseId": "nope"},
                            }
                        }
                    }
                ]
            ),
            "Invalid input request, please fix your input and try again.",
        ),
    ],
)
def test_ordering_violations_get_the_services_own_errors(mutate: object, message: str) -> None:
    err = _violation(mutate)
    assert err.kind == "ValidationException" and message in err.message


def _with(event: dict, name: str, path: list[str], value: object) -> dict:
    body = json.loads(json.dumps(event))
    target = body["event"][name]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def test_ending_input_with_the_prompt_open_names_the_prompt() -> None:
    run = Run()
    run.send(run.session.start())
    run.model.end_input(run.now)
    run.advance(0.1)
    (err,) = errors_of(run)
    assert f"The following prompts were not closed: [{run.session.prompt_name}]" in err.message
    clean = Run()
    clean.send(clean.session.start())
    clean.send(clean.session.close())
    clean.model.end_input(clean.now)
    clean.advance(0.1)
    assert not errors_of(clean) and clean.raw[-1] == END and "completionEnd" in clean.names()


@pytest.mark.parametrize(
    ("scenario", "feed_voice", "kind", "message"),
    [
        (
            Scenario(time_scale=0.01, silence_limit_s=1e9, input_timeout_s=1e9),
            True,
            "ModelTimeoutException",
            "Model has timed out",
        ),
        (Scenario(time_scale=0.01, input_timeout_s=1e9), False, "ValidationException", "InternalErrorCode=531"),
        (
            Scenario(time_scale=0.01, silence_limit_s=1e9),
            None,
            "ValidationException",
            "Timed out waiting for input events",
        ),
    ],
)
def test_limits_fire_on_the_scaled_clock(scenario: Scenario, feed_voice: bool | None, kind: str, message: str) -> None:
    run = Run(scenario=scenario)
    run.send(run.session.start())
    limit = 0.01 * {"ModelTimeoutException": 480, "ValidationException": 175 if feed_voice is False else 60}[kind]
    while run.now < limit + 1 and not errors_of(run):
        if feed_voice is not None:
            run.send(run.session.audio(tone16(0.02) if feed_voice else silence16(0.02)))
        run.advance(0.02)
    (err,) = errors_of(run)
    assert err.kind == kind and message in err.message
    assert abs(run.now - limit) < 0.1


def test_the_same_seed_gives_the_same_conversation() -> None:
    def conversation(seed: int) -> list[object]:
        run = Run(scenario=Scenario(seed=seed))
        run.send(run.session.start())
        run.stream_audio(tone16(0.7) + silence16(1.6) + tone16(0.4) + silence16(2.5))
        return run.raw

    assert conversation(5) == conversation(5)
    assert conversation(5) != conversation(6)


def test_history_blocks_are_accepted_in_order() -> None:
    run = Run(SessionSettings(history=(Message(ev.Role.USER, "hi"), Message(ev.Role.ASSISTANT, "hello"))))
    events = run.session.start() + run.session.audio(silence16(0.1)) + run.session.close()
    check_input_sequence(events)
    run.send(events)
    assert not errors_of(run)


def test_too_many_streams_are_throttled() -> None:
    from sonic_bridge.fake.direct import FakeService

    service = FakeService(Scenario(max_streams=2))
    service.new_stream(NOVA1, 0.0)
    service.new_stream(NOVA1, 0.0)
    with pytest.raises(FakeError, match="Too many concurrent"):
        service.new_stream(NOVA1, 0.0)
    service.release()
    assert isinstance(service.new_stream(NOVA1, 0.0), FakeSonic)


def test_scenario_files_load_and_refuse_unknown_keys(tmp_path: object) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "s.yaml"
    p.write_text("seed: 7\ntime_scale: 0.5\nturns:\n  - tool: get_weather\n    arguments: {city: Oslo}\n")
    sc = Scenario.load(p)
    assert sc.seed == 7 and sc.plan(1).tool == "get_weather" and sc.plan(2) == TurnPlan()
    p.write_text('{"seed": 1, "colour": "red"}')
    with pytest.raises(ValueError, match="unknown scenario keys"):
        Scenario.load(p)
    with pytest.raises(ValueError, match="unknown fault"):
        TurnPlan(fault="meteor")


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("s.json", "seed: 3\n", "is not valid JSON"),
    ("s.yaml", "seed: [3\n", "is not valid YAML"),
    ("s.json", "[1, 2]", "must hold a mapping, got list"),
    ("s.json", '{"turns": [3]}', "must be a mapping"),
    ("s.json", '{"thinking_ms": 5}', "not iterable"),
    ("s.json", '{"max_content_bytes": 0}', "max_content_bytes must be a positive whole number"),
])
def test_a_scenario_file_that_cannot_be_used_is_named_with_its_problem(
    tmp_path: object, name: str, text: str, problem: str
) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / name
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        Scenario.load(path)
    assert str(path) in str(info.value) and problem in str(info.value), info.value
    with pytest.raises(ValueError, match="cannot be read"):
        Scenario.load(Path(str(tmp_path)) / "missing.json")


def test_a_scenario_file_drives_a_reproducible_conversation(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "scenario.yaml"
    path.write_text("seed: 21\nthinking_ms: [200, 900]\nturns:\n  - reply_text: First answer.\n"
                    "  - fault: model_stream_error\n")

    def conversation() -> list[object]:
        run = Run(scenario=Scenario.load(path))
        run.send(run.session.start())
        run.stream_audio(tone16(0.7) + silence16(1.6) + tone16(0.4) + silence16(2.5))
        return run.raw

    first = conversation()
    assert first == conversation()
    assert any(isinstance(o, dict) and o["event"].get("textOutput", {}).get("content") == "First answer."
               for o in first)
    assert any(isinstance(o, FakeError) and o.kind == "ModelStreamErrorException" for o in first)


def test_a_slow_turn_answers_three_seconds_later() -> None:
    def first_audio_at(plan: TurnPlan) -> float:
        run = Run(scenario=Scenario(seed=8, thinking_ms=(400, 400), turns=(plan,)))
        run.send(run.session.start())
        run.stream_audio(tone16(0.5) + silence16(1.6))
        end = run.now
        while not any(isinstance(e, ev.AudioOut) for e in run.events):
            run.advance(0.02)
        return run.now - end

    assert first_audio_at(TurnPlan()) < 0.5
    assert 3.2 < first_audio_at(TurnPlan(fault="slow")) < 3.6  # 0.4 s thinking + 3 s, less one 20 ms chunk
