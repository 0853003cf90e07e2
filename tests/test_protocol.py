"""The sans-IO session: what it sends, what it makes of the service's events, what it refuses."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.history import Message
from sonic_bridge.engines.sonic.protocol import ProtocolError, SonicSession, UnknownToolUse, parse_tool_arguments
from sonic_bridge.settings import SessionSettings, Tool
from tests.ordering_checker import OrderingViolation, check_input_sequence

NOVA2 = "amazon.nova-2-sonic-v1:0"
NOVA1 = "amazon.nova-sonic-v1:0"
WEATHER = Tool("get_weather", "Get current weather", {"type": "object", "properties": {"location": {"type": "string"}}})


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"id-{next(counter)}"


def session(model: str = NOVA2, **kw: Any) -> SonicSession:
    return SonicSession(SessionSettings(model_id=model, **kw), new_id=ids())


def names(events: list[dict[str, Any]]) -> list[str]:
    return [next(iter(e["event"])) for e in events]


# --------------------------------------------------------------------------- output examples
# Every example event of the protocol document, section 2.2, in the order of a real turn.
DOC_EXAMPLES: list[dict[str, Any]] = [
    {"event": {"completionStart": {"sessionId": "S", "promptName": "P", "completionId": "K"}}},
    {
        "event": {
            "contentStart": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "U1",
                "type": "TEXT",
                "role": "USER",
                "additionalModelFields": '{"generationStage":"FINAL"}',
                "textOutputConfiguration": {"mediaType": "text/plain"},
            }
        }
    },
    {
        "event": {
            "textOutput": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "U1",
                "role": "USER",
                "content": "What's the weather in Seattle?",
            }
        }
    },
    {
        "event": {
            "contentEnd": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "U1",
                "type": "TEXT",
                "stopReason": "PARTIAL_TURN",
            }
        }
    },
    {
        "event": {
            "contentStart": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X3",
                "type": "TOOL",
                "role": "TOOL",
                "toolUseOutputConfiguration": {"mediaType": "application/json"},
            }
        }
    },
    {
        "event": {
            "toolUse": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X3",
                "role": "TOOL",
                "toolName": "get_weather",
                "toolUseId": "6f1c",
                "content": '{"location": "Seattle", "units": "fahrenheit"}',
            }
        }
    },
    {
        "event": {
            "contentEnd": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X3",
                "type": "TOOL",
                "stopReason": "TOOL_USE",
            }
        }
    },
    {
        "event": {
            "contentStart": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X1",
                "type": "TEXT",
                "role": "ASSISTANT",
                "additionalModelFields": '{"generationStage":"SPECULATIVE"}',
                "textOutputConfiguration": {"mediaType": "text/plain"},
            }
        }
    },
    {
        "event": {
            "textOutput": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X1",
                "role": "ASSISTANT",
                "content": "Sure, the weather in Seattle is sunny.",
            }
        }
    },
    {
        "event": {
            "contentEnd": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X1",
                "type": "TEXT",
                "stopReason": "PARTIAL_TURN",
            }
        }
    },
    {
        "event": {
            "contentStart": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X2",
                "type": "AUDIO",
                "role": "ASSISTANT",
                "audioOutputConfiguration": {
                    "mediaType": "audio/lpcm",
                    "sampleRateHertz": 24000,
                    "sampleSizeBits": 16,
                    "encoding": "base64",
                    "channelCount": 1,
                },
            }
        }
    },
    {
        "event": {
            "audioOutput": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X2",
                "content": base64.b64encode(b"\x01\x00\x02\x00").decode(),
            }
        }
    },
    {
        "event": {
            "usageEvent": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "details": {
                    "delta": {
                        "input": {"speechTokens": 0, "textTokens": 3},
                        "output": {"speechTokens": 20, "textTokens": 0},
                    },
                    "total": {
                        "input": {"speechTokens": 288, "textTokens": 3443},
                        "output": {"speechTokens": 694, "textTokens": 203},
                    },
                },
                "totalInputTokens": 3731,
                "totalOutputTokens": 897,
                "totalTokens": 4628,
            }
        }
    },
    {
        "event": {
            "contentEnd": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X2",
                "type": "AUDIO",
                "stopReason": "END_TURN",
            }
        }
    },
    {
        "event": {
            "contentStart": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X5",
                "type": "TEXT",
                "role": "ASSISTANT",
                "additionalModelFields": '{"generationStage":"FINAL"}',
                "textOutputConfiguration": {"mediaType": "text/plain"},
            }
        }
    },
    {
        "event": {
            "textOutput": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X5",
                "role": "ASSISTANT",
                "content": "Sure, the weather in Seattle is sunny.",
            }
        }
    },
    {
        "event": {
            "contentEnd": {
                "sessionId": "S",
                "promptName": "P",
                "completionId": "K",
                "contentId": "X5",
                "type": "TEXT",
                "stopReason": "END_TURN",
            }
        }
    },
    {"event": {"completionEnd": {"sessionId": "S", "promptName": "P", "completionId": "K", "stopReason": "END_TURN"}}},
]


def test_every_documented_output_event_becomes_the_right_host_events() -> None:
    s = session(tools=(WEATHER,))
    s.start()
    got = [e for raw in DOC_EXAMPLES for e in s.receive(json.dumps(raw))]
    assert got == [
        ev.Transcript(ev.Role.USER, ev.Stage.FINAL, "What's the weather in Seattle?", 1),
        ev.ToolCall("get_weather", "6f1c", {"location": "Seattle", "units": "fahrenheit"}),
        ev.Transcript(ev.Role.ASSISTANT, ev.Stage.SPECULATIVE, "Sure, the weather in Seattle is sunny.", 1),
        ev.AudioOut(b"\x01\x00\x02\x00", 24000, ev.SampleFormat.INT16, "r1"),
        ev.Usage(ev.TokenCounts(0, 3, 20, 0), ev.TokenCounts(288, 3443, 694, 203)),
        ev.Transcript(ev.Role.ASSISTANT, ev.Stage.FINAL, "Sure, the weather in Seattle is sunny.", 1),
        ev.TurnEnded("END_TURN", "r1"),
    ]
    assert s.pending_tool_uses == {"6f1c": "get_weather"}
    assert next(m.text for m in s.history) == "What's the weather in Seattle?"


def test_barge_in_marker_interrupts_the_current_response_once() -> None:
    s = session()
    s.start()
    feed = [
        {"event": {"contentStart": {"contentId": "A", "type": "AUDIO", "role": "ASSISTANT"}}},
        {"event": {"audioOutput": {"contentId": "A", "content": base64.b64encode(b"\0\0").decode()}}},
        # pipecat's observation: AUDIO ends first with END_TURN, then the INTERRUPTED text block.
        {"event": {"contentEnd": {"contentId": "A", "type": "AUDIO", "stopReason": "END_TURN"}}},
        {
            "event": {
                "contentStart": {
                    "contentId": "T",
                    "type": "TEXT",
                    "role": "ASSISTANT",
                    "additionalModelFields": '{"generationStage":"FINAL"}',
                }
            }
        },
        {"event": {"textOutput": {"contentId": "T", "role": "ASSISTANT", "content": '{ "interrupted" : true }'}}},
        {"event": {"contentEnd": {"contentId": "T", "type": "TEXT", "stopReason": "INTERRUPTED"}}},
    ]
    got = [e for raw in feed for e in s.receive(raw)]
    assert got[0] == ev.AudioOut(b"\0\0", 24000, ev.SampleFormat.INT16, "r1")
    assert got[1:] == [ev.Interrupted("r1"), ev.TurnEnded("INTERRUPTED", "r1")]
    # The marker is not a transcript and never enters the history.
    assert not any("interrupted" in m.text for m in s.history)


def test_double_encoded_tool_arguments_are_peeled() -> None:
    inner = json.dumps({"location": "Oslo"})
    assert parse_tool_arguments(json.dumps(inner)) == {"location": "Oslo"}
    assert parse_tool_arguments(inner) == {"location": "Oslo"}
    assert parse_tool_arguments("") == {}
    assert parse_tool_arguments("not json") == {"_raw": "not json"}


def test_unknown_and_malformed_service_events_are_reported_not_fatal() -> None:
    s = session()
    s.start()
    (w,) = s.receive({"event": {"somethingNew": {"x": 1}}})
    assert isinstance(w, ev.Warning) and w.code == "unknown_service_event" and "somethingNew" in w.message
    (w,) = s.receive(b"{not json")
    assert isinstance(w, ev.Warning) and w.code == "bad_service_event"
    (w,) = s.receive({"event": {"audioOutput": {"content": "!!!"}}})
    assert w.code == "bad_service_event"
    # The session still works afterwards.
    assert names(s.audio(b"\0\0")) == ["audioInput"]


# --------------------------------------------------------------------------- input side
def test_start_sends_the_documented_prefix_in_order() -> None:
    history = (
        Message(ev.Role.ASSISTANT, "dropped: history must start with the user"),
        Message(ev.Role.USER, "hi"),
        Message(ev.Role.USER, "again"),
        Message(ev.Role.ASSISTANT, "hello"),
    )
    s = session(history=history, tools=(WEATHER,), turn_sensitivity="HIGH")
    held = s.audio(b"\1\0" * 10)
    assert held == []  # audio before start is held, not lost
    out = s.start()
    assert names(out) == ["sessionStart", "promptStart"] + ["contentStart", "textInput", "contentEnd"] * 3 + [
        "contentStart",
        "audioInput",
    ]
    assert out[0]["event"]["sessionStart"]["turnDetectionConfiguration"] == {"endpointingSensitivity": "HIGH"}
    prompt = out[1]["event"]["promptStart"]
    assert prompt["audioOutputConfiguration"]["voiceId"] == "matthew"
    schema = prompt["toolConfiguration"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
    assert json.loads(schema) == WEATHER.input_schema
    assert prompt["toolConfiguration"]["toolChoice"] == {"auto": {}}
    texts = [e["event"]["textInput"]["content"] for e in out if "textInput" in e["event"]]
    assert texts[1:] == ["hi\nagain", "hello"]
    check_input_sequence(out + s.close())


def test_nova1_gets_no_nova2_fields_and_refuses_text() -> None:
    s = session(NOVA1, tools=(WEATHER,))
    out = s.start()
    assert "turnDetectionConfiguration" not in out[0]["event"]["sessionStart"]
    assert "toolChoice" not in out[1]["event"]["promptStart"]["toolConfiguration"]
    with pytest.raises(ProtocolError, match="does not respond to text"):
        s.text("hello")
    with pytest.raises(ValueError, match="no turn detection"):
        SessionSettings(model_id=NOVA1, turn_sensitivity="LOW")
    check_input_sequence(out + s.audio(b"\0\0") + s.close(), nova1=True)


@pytest.mark.parametrize(
    "model",
    ["us.amazon.nova-2-sonic-v1:0", "eu.amazon.nova-sonic-v1:0", "amazon.nova-2-5-sonic", "apac.amazon.nova-2-5-sonic"],
)
def test_cross_region_and_newer_model_ids_are_accepted(model: str) -> None:
    s = session(model)
    check_input_sequence(s.start() + s.close(), nova1="nova-sonic-v1" in model)


def test_unknown_later_model_is_treated_as_newest_with_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sonic_bridge.engines.sonic import models
    from sonic_bridge.engines.sonic.models import Family, model_info

    monkeypatch.setattr(models, "_warned", set())
    info = model_info("amazon.nova-3-sonic-v1:0")
    assert info.family is Family.NOVA_2_5 and not info.known
    assert "'amazon.nova-3-sonic-v1:0' is not one sonic-bridge knows" in caplog.text
    assert "later generation than Nova 2.5 Sonic" in caplog.text
    with pytest.raises(ValueError, match="not a Nova Sonic model"):
        model_info("anthropic.claude-v2")


def test_bad_settings_are_refused_with_the_offending_value() -> None:
    with pytest.raises(ValueError, match="'tina' is not available"):
        SessionSettings(model_id=NOVA1, voice="tina")
    with pytest.raises(ValueError, match="output_rate must be one of"):
        SessionSettings(output_rate=44100)
    with pytest.raises(ValueError, match="turn_sensitivity"):
        SessionSettings(turn_sensitivity="MAX")
    with pytest.raises(ValueError, match="tool_choice"):
        SessionSettings(tools=(WEATHER,), tool_choice="nope")


def test_tool_results_must_answer_a_pending_tool_use_exactly_once() -> None:
    s = session(tools=(WEATHER,))
    s.start()
    with pytest.raises(UnknownToolUse, match="no tool use 'ghost'"):
        s.tool_result("ghost", "{}")
    s.receive({"event": {"toolUse": {"toolName": "get_weather", "toolUseId": "t1", "content": "{}"}}})
    out = s.tool_result("t1", {"temperature": 72})
    assert names(out) == ["contentStart", "toolResult", "contentEnd"]
    assert json.loads(out[1]["event"]["toolResult"]["content"]) == {"temperature": 72}
    with pytest.raises(UnknownToolUse, match="already answered"):
        s.tool_result("t1", "{}")
    assert names(s.audio(b"\0\0")) == ["audioInput"]  # still usable


def test_bad_intents_raise_clear_errors_and_leave_the_session_usable() -> None:
    s = session()
    with pytest.raises(ProtocolError, match="before start"):
        s.text("hi")
    s.start()
    with pytest.raises(ProtocolError, match="not whole 16-bit samples"):
        s.audio(b"\0\0\0")
    with pytest.raises(ProtocolError, match="empty"):
        s.audio(b"")
    with pytest.raises(ProtocolError, match="PCM16 bytes"):
        s.audio([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="non-empty string"):
        s.text("  ")
    with pytest.raises(ProtocolError, match="str, dict or list"):
        s.receive({"event": {"toolUse": {"toolName": "x", "toolUseId": "t", "content": "{}"}}})
        s.tool_result("t", 42)  # type: ignore[arg-type]
    assert s.pending_tool_uses == {"t": "x"}  # the refused result did not consume the tool use
    assert names(s.text("hello")) == ["contentStart", "textInput", "contentEnd"]
    s.close()
    for call in (lambda: s.audio(b"\0\0"), lambda: s.text("x"), lambda: s.tool_result("t", "{}"), s.close):
        with pytest.raises(ProtocolError, match=r"after close|closed session"):
            call()


def test_long_audio_is_split_below_the_sdk_part_limit() -> None:
    s = session()
    s.start()
    out = s.audio(b"\1\2" * 100_000)
    assert len(out) == 4
    assert b"".join(base64.b64decode(e["event"]["audioInput"]["content"]) for e in out) == b"\1\2" * 100_000


def test_checker_catches_audio_inside_a_text_block() -> None:
    s = session()
    out = s.start()
    text = s.text("hi")
    bad = out + text[:1] + s.audio(b"\0\0") + text[1:]
    with pytest.raises(OrderingViolation, match="inside an open"):
        check_input_sequence(bad)


# --------------------------------------------------------------------------- random intents
intent = st.one_of(
    st.tuples(st.just("audio"), st.binary(min_size=0, max_size=300)),
    st.tuples(st.just("text"), st.text(max_size=20)),
    st.tuples(st.just("tool_use"), st.sampled_from(["t1", "t2", "t3"])),
    st.tuples(st.just("tool_result"), st.sampled_from(["t1", "t2", "t3", "ghost"])),
    st.tuples(st.just("start"), st.none()),
    st.tuples(st.just("close"), st.none()),
)
history_st = st.lists(st.tuples(st.sampled_from([ev.Role.USER, ev.Role.ASSISTANT]), st.text(max_size=30)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from([NOVA1, NOVA2, "amazon.nova-2-5-sonic"]),
    intents=st.lists(intent, max_size=40),
    history=history_st,
)
def test_every_sequence_the_session_produces_is_accepted_by_the_checker(
    model: str, intents: list[tuple[str, Any]], history: list[tuple[ev.Role, str]]
) -> None:
    s = SonicSession(
        SessionSettings(model_id=model, tools=(WEATHER,), history=tuple(Message(r, t) for r, t in history)),
        new_id=ids(),
    )
    sent: list[dict[str, Any]] = []
    for kind, arg in intents:
        try:
            if kind == "audio":
                sent += s.audio(arg)
            elif kind == "text":
                sent += s.text(arg)
            elif kind == "tool_use":
                if s.is_open:
                    s.receive({"event": {"toolUse": {"toolName": "get_weather", "toolUseId": arg, "content": "{}"}}})
            elif kind == "tool_result":
                sent += s.tool_result(arg, "{}")
            elif kind == "start":
                sent += s.start()
            else:
                sent += s.close()
        except ProtocolError:
            pass
    check_input_sequence(sent, nova1=model == NOVA1)
    # Every tool result answers a tool use that was asked, and none twice.
    answered = [
        e["event"]["contentStart"]["toolResultInputConfiguration"]["toolUseId"]
        for e in sent
        if "contentStart" in e["event"] and e["event"]["contentStart"]["type"] == "TOOL"
    ]
    assert len(answered) == len(set(answered)) and "ghost" not in answered


# --------------------------------------------------------------------------- hardening (issue 16)
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"event": {"usageEvent": {"details": "12 tokens"}}}, "details must be an object, got a string"),
        ({"event": {"usageEvent": {"details": {"delta": {"input": {"speechTokens": "x"}}}}}}, "speechTokens"),
        ({"event": {"usageEvent": {"details": {"total": {"output": {"textTokens": 10**30}}}}}}, "textTokens"),
        ({"event": {"usageEvent": {"details": {"total": {"output": {"textTokens": -1}}}}}}, "textTokens"),
        ({"event": {"contentStart": {"additionalModelFields": "[1]"}}}, "additionalModelFields must be an object"),
        ({"event": {"textOutput": {"content": {"text": "hi"}}}}, "content must be a string, got an object"),
        ({"event": {"toolUse": {"toolName": ["x"], "toolUseId": "t"}}}, "toolName must be a string"),
        ({"event": {"contentEnd": {"stopReason": 7}}}, "stopReason must be a string, got a number"),
        ({"event": {"audioOutput": {"content": None}}}, "content is missing"),
        ({"event": []}, "could not read"),
        ({"event": {"a": {}, "b": {}}}, "could not read"),
        ([1, 2], "could not read"),
        ('{"event": {"textOutput": {"content": ' + DEEP + "}}}", "nested deeper than"),
        ('{"event": {"usageEvent": {"totalTokens": NaN}}}', "NaN"),
    ],
)
def test_a_malformed_service_event_becomes_a_warning_naming_the_field(raw: Any, why: str) -> None:
    s = session()
    s.start()
    got = s.receive(raw)
    warnings = [e for e in got if isinstance(e, ev.Warning)]
    assert warnings and warnings[0].code == "bad_service_event", got
    assert why in warnings[0].message
    # The conversation goes on: a well-formed event after it is read as usual.
    assert s.receive({"event": {"textOutput": {"role": "USER", "content": "still here"}}}) == [
        ev.Transcript(ev.Role.USER, ev.Stage.FINAL, "still here", 1)
    ]


def test_an_unknown_generation_stage_keeps_the_block_and_warns() -> None:
    s = session()
    s.start()
    got = s.receive({"event": {"contentStart": {"contentId": "c", "type": "TEXT", "role": "ASSISTANT",
                                                "additionalModelFields": '{"generationStage": "DRAFT"}'}}})
    assert [type(e) for e in got] == [ev.Warning] and "DRAFT" in got[0].message  # type: ignore[union-attr]
    assert s.receive({"event": {"textOutput": {"contentId": "c", "content": "hello"}}}) == [
        ev.Transcript(ev.Role.ASSISTANT, ev.Stage.FINAL, "hello", 1)
    ]


def test_deep_or_non_finite_tool_arguments_reach_the_host_as_raw_text() -> None:
    s = session(tools=(WEATHER,))
    s.start()
    for content in ("[" * 5000 + "]" * 5000, '{"x": NaN}', '{"x": 1e999}'):
        (call,) = s.receive({"event": {"toolUse": {"toolName": "get_weather", "toolUseId": "t", "content": content}}})
        assert call == ev.ToolCall("get_weather", "t", {"_raw": content})


def test_an_interrupted_marker_check_survives_deep_text() -> None:
    s = session()
    s.start()
    (t,) = s.receive({"event": {"textOutput": {"role": "ASSISTANT", "content": "{" + DEEP}}})
    assert isinstance(t, ev.Transcript)


@pytest.mark.parametrize(
    ("content", "error", "why"),
    [
        ({"temperature": float("nan")}, ValueError, r"nan at \['temperature'\]; JSON has no NaN or infinity"),
        ([1.0, float("inf")], ValueError, r"inf at \[1\]"),
        ({"a": {"b": -float("inf")}}, ValueError, r"-inf at \['a'\]\['b'\]"),
        ({"s": {1, 2}}, TypeError, r"set at \['s'\], which JSON cannot carry"),
        (json.loads("[" * 200 + "]" * 200), ValueError, "nested deeper than 64 levels"),
    ],
)
def test_tool_results_that_are_not_json_are_refused_before_anything_is_sent(
    content: Any, error: type[Exception], why: str
) -> None:
    from sonic_bridge.engines.sonic.protocol import tool_result_text

    with pytest.raises(error, match=why):
        tool_result_text(content)
    s = session(tools=(WEATHER,))
    s.start()
    s.receive({"event": {"toolUse": {"toolName": "get_weather", "toolUseId": "t", "content": "{}"}}})
    with pytest.raises(ProtocolError, match=why):
        s.tool_result("t", content)
    assert s.pending_tool_uses == {"t": "get_weather"}  # still waiting: nothing was consumed
    out = s.tool_result("t", {"temperature": 21.5})
    assert json.loads(out[1]["event"]["toolResult"]["content"]) == {"temperature": 21.5}
