"""Property: whatever the service sends, the sans-IO session keeps going and says what it ignored.

Service events of the wrong shape (valid JSON, wrong types), unknown events, huge and deep values,
as text, bytes or already-parsed dicts: ``receive`` never raises, everything it returns can cross the
ring (the codec is the next step in the worker), malformed input yields a warning, and a real turn
that follows is still understood.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonic_bridge import events as ev
from sonic_bridge.engines.sonic.protocol import SonicSession
from sonic_bridge.ipc import codec
from sonic_bridge.settings import SessionSettings
from tests.test_protocol import DOC_EXAMPLES, WEATHER, ids

KNOWN = ["completionStart", "completionEnd", "contentStart", "textOutput", "audioOutput", "toolUse", "contentEnd",
         "usageEvent"]
FIELDS = ["content", "contentId", "type", "role", "stopReason", "toolName", "toolUseId", "additionalModelFields",
          "details", "delta", "total", "input", "output", "speechTokens", "textTokens", "generationStage"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "ASSISTANT", "USER", "TOOL", "TEXT", "AUDIO", "END_TURN", "INTERRUPTED", "FINAL",
                     "SPECULATIVE", "AAA=", "!!!", '{"generationStage":"X"}', '{ "interrupted" : true }', "\ud800"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20,
)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


deep_text = st.integers(65, 50_000).map(lambda n: "[" * n + "]" * n)
huge_text = st.integers(100_000, 2_000_000).map(lambda n: "x" * n)
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values | deep_text | huge_text, max_size=6)
# Shapes that are certainly wrong: each must be reported as a warning.
not_objects = json_values.filter(lambda v: not isinstance(v, dict))
malformed = st.one_of(
    not_objects,
    st.builds(lambda v: {"event": v}, not_objects),
    st.builds(lambda n, v: {"event": {n: v}}, st.sampled_from(KNOWN), not_objects),
    st.builds(lambda n: {"event": {n: {}, "other": {}}}, st.sampled_from(KNOWN)),
    st.builds(lambda n: {"event": {n: {"x": nested(70)}}}, st.sampled_from(KNOWN)),
    st.builds(lambda n, d: f'{{"event": {{"{n}": {{"content": {d}}}}}}}', st.sampled_from(KNOWN), deep_text),
    st.sampled_from(["{not json", '{"event": {"usageEvent": {"totalTokens": NaN}}}', b"\xff\xfe", ""]),
    st.builds(lambda n: {"event": {n: {}}}, st.text(min_size=1, max_size=12).filter(lambda n: n not in KNOWN)),
)
plausible = st.builds(lambda n, b: {"event": {n: b}}, st.sampled_from(KNOWN), bodies)


def as_wire(value: Any, form: int) -> Any:
    """The same event as the SDK gives it (str), as bytes, or already parsed."""
    if form == 0 or isinstance(value, str | bytes):
        return value
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        return value
    return text if form == 1 else text.encode()


def crosses_the_ring(event: ev.Event) -> None:
    back = codec.decode(codec.encode(event))
    assert type(back) is type(event)


def fresh() -> SonicSession:
    s = SonicSession(SessionSettings(tools=(WEATHER,)), new_id=ids())
    s.start()
    return s


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(st.lists(st.tuples(st.booleans(), malformed | plausible, st.integers(0, 2)), min_size=1, max_size=12))
def test_the_session_survives_any_service_events_with_warnings(feed: list[tuple[bool, Any, int]]) -> None:
    s = fresh()
    for _, value, form in feed:
        out = s.receive(as_wire(value, form))
        assert isinstance(out, list)
        for event in out:
            crosses_the_ring(event)
    # A real turn after the junk is still understood, and its tool call can be answered.
    got = [e for raw in DOC_EXAMPLES for e in s.receive(json.dumps(raw))]
    assert ev.Transcript(ev.Role.USER, ev.Stage.FINAL, "What's the weather in Seattle?", max(1, s.turn_id)) in got
    assert ev.ToolCall("get_weather", "6f1c", {"location": "Seattle", "units": "fahrenheit"}) in got
    assert s.tool_result("6f1c", {"temperature": 72})
    assert s.audio(b"\0\0")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(malformed, st.integers(0, 2))
def test_every_malformed_event_is_reported_as_a_warning(value: Any, form: int) -> None:
    s = fresh()
    out = s.receive(as_wire(value, form))
    assert [type(e) for e in out] == [ev.Warning], out
    assert out[0].code in ("bad_service_event", "unknown_service_event")  # type: ignore[union-attr]
    assert len(out[0].message) < 1000  # type: ignore[union-attr]  # names the problem, never echoes a payload


any_fields = st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, json_values))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KNOWN), any_fields)
def test_unexpected_fields_in_a_known_event_never_raise(name: str, body: dict[str, Any]) -> None:
    s = fresh()
    for event in s.receive({"event": {name: body}}):
        crosses_the_ring(event)
