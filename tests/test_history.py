from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from sonic_bridge.engines.sonic.history import Message, sanitize
from sonic_bridge.events import Role

U, A = Role.USER, Role.ASSISTANT


def test_sanitize_merges_same_roles_and_starts_with_the_user() -> None:
    out = sanitize([Message(A, "greeting"), Message(U, "a"), Message(U, "b"), Message(A, " "), Message(A, "c")])
    assert out == [Message(U, "a\nb"), Message(A, "c")]


def test_sanitize_caps_each_message_and_drops_the_oldest_first() -> None:
    msgs = [
        Message(U, "x" * 60_000),
        Message(A, "y" * 50_000),
        Message(U, "z" * 50_000),
        Message(A, "w" * 50_000),
        Message(U, "v" * 50_000),
    ]
    out = sanitize(msgs)
    assert all(len(m.text.encode()) <= 50_000 for m in out)
    assert sum(len(m.text.encode()) for m in out) <= 200_000
    assert out[-1].text.startswith("v") and out[0].role is U
    assert not any(m.text.startswith("x") for m in out)


@given(st.lists(st.tuples(st.sampled_from([U, A]), st.text(max_size=3000)), max_size=200))
def test_sanitized_history_always_meets_the_service_rules(raw: list[tuple[Role, str]]) -> None:
    out = sanitize([Message(r, t) for r, t in raw], max_message_bytes=2000, max_total_bytes=8000)
    assert not out or out[0].role is U
    assert all(a.role is not b.role for a, b in itertools.pairwise(out))
    assert all(0 < len(m.text.encode()) <= 2000 for m in out)
    assert sum(len(m.text.encode()) for m in out) <= 8000
