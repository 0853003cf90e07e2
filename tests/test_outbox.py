"""The worker -> host outbox: control events are never lost to a full ring, nothing is too big to send.

The unit tests drive a real ring with plain calls (the test is both producer and consumer); the bridge
tests reproduce what a host sees: one that stops polling during a reply, and a 64 KiB outbound ring.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge, Tool, errors
from sonic_bridge import events as ev
from sonic_bridge.ipc import codec
from sonic_bridge.ipc import messages as msg
from sonic_bridge.ipc.ring import Doorbell, SharedRing
from sonic_bridge.worker.outbox import Outbox
from tests.fake_driver import silence16, tone16
from tests.helpers import has_state, run_until

RATE = 24000
F32 = ev.SampleFormat.FLOAT32


class Pipe:
    """An outbox on a small ring, with the host's end of it."""

    def __init__(self, capacity: int = 8192, **kw: int) -> None:
        self.ring = SharedRing.create(capacity)
        self.bell = Doorbell()
        self.host = SharedRing.attach(os.dup(self.ring.fd))
        self.outbox = Outbox(self.ring, self.bell, **kw)

    def read(self, limit: int = 1_000_000) -> list[object]:
        out = []
        for _ in range(limit):
            item = self.host.read()
            if item is None:
                break
            out.append(codec.decode(item[0]))
        return out

    def close(self) -> None:
        for r in (self.host, self.ring, self.bell):
            r.close()


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close()


def audio(n: int, rid: str = "1.1", nbytes: int = 1000) -> ev.AudioOut:
    return ev.AudioOut(bytes([n % 256]) * nbytes, RATE, F32, rid)


def fill(pipe: Pipe) -> int:
    """Reply audio until the ring refuses one; returns how many got in."""
    n = 0
    while pipe.outbox.send(audio(n)):
        n += 1
    return n


def test_control_events_sent_while_the_ring_is_full_reach_the_host_in_order_once_it_drains(pipe: Pipe) -> None:
    accepted = fill(pipe)
    call = ev.ToolCall("get_weather", "t-1", {"city": "Oslo"})
    end = ev.TurnEnded("END_TURN", "1.1")
    assert pipe.outbox.send(end) and pipe.outbox.send(call)  # kept, not dropped
    assert not pipe.outbox.send(audio(99))  # audio behind them is what may go
    first = pipe.read()
    assert len(first) == accepted and all(isinstance(e, ev.AudioOut) for e in first)
    pipe.outbox.beat()  # the worker's heartbeat retries the flush
    assert pipe.outbox.send(audio(100, "1.2"))
    rest = pipe.read()
    warning, *later = rest
    assert isinstance(warning, ev.Warning) and warning.code == errors.WORKER_RING_FULL
    assert warning.count == 2 and "reply audio" in warning.message
    assert later == [end, call, audio(100, "1.2")]
    assert pipe.outbox.dropped == 2


def test_audio_never_overtakes_a_control_event_that_is_still_waiting(pipe: Pipe) -> None:
    fill(pipe)
    big = ev.Transcript(ev.Role.ASSISTANT, ev.Stage.FINAL, "x" * 2000, 1)
    assert pipe.outbox.send(big)
    pipe.host.read()  # room for one audio record (1016 bytes), not for the transcript
    assert not pipe.outbox.send(audio(50))
    pipe.read()
    pipe.outbox.beat()
    assert pipe.outbox.send(audio(51))
    kinds = [type(e).__name__ for e in pipe.read()]
    assert kinds == ["Warning", "Transcript", "AudioOut"]


def test_a_full_backlog_drops_and_reports_but_never_raises() -> None:
    pipe = Pipe(backlog_limit=2000)
    try:
        fill(pipe)
        kept = sum(pipe.outbox.send(ev.Transcript(ev.Role.USER, ev.Stage.FINAL, "y" * 400, 1)) for _ in range(10))
        assert 0 < kept < 10
        pipe.read()
        pipe.outbox.beat()
        got = pipe.read()
        (warning,) = [e for e in got if isinstance(e, ev.Warning)]
        assert warning.count == 10 - kept + 1 and "control events" in warning.message  # +1: fill()'s last audio
        assert sum(isinstance(e, ev.Transcript) for e in got) == kept
    finally:
        pipe.close()


def test_audio_accounting_is_kept_as_its_latest_value_while_the_host_is_away(pipe: Pipe) -> None:
    fill(pipe)
    for n in range(50):
        pipe.outbox.send(msg.AudioAccounted(n, 0, ""))
    pipe.read()
    pipe.outbox.beat()
    assert [e for e in pipe.read() if isinstance(e, msg.AudioAccounted)] == [msg.AudioAccounted(49, 0, "")]


def test_audio_larger_than_the_ring_allows_is_split_into_pieces_that_fit() -> None:
    pipe = Pipe(64 * 1024)
    pcm = bytes(range(256)) * 160  # 40960 bytes: over the 32 KiB message limit of a 64 KiB ring
    try:
        assert pipe.outbox.send(ev.AudioOut(pcm, RATE, F32, "7.3"))
        chunks = pipe.read()
    finally:
        pipe.close()
    assert all(isinstance(c, ev.AudioOut) and c.response_id == "7.3" for c in chunks)
    assert len(chunks) > 1 and b"".join(c.pcm for c in chunks) == pcm  # type: ignore[union-attr]
    assert all(len(c.pcm) % 4 == 0 for c in chunks)  # type: ignore[union-attr]


def test_text_too_large_for_the_ring_is_cut_with_a_warning_and_a_tool_call_is_refused(pipe: Pipe) -> None:
    limit = pipe.ring.max_message()
    text = "ä" * 6000  # 12000 bytes of UTF-8
    assert pipe.outbox.send(ev.Transcript(ev.Role.ASSISTANT, ev.Stage.FINAL, text, 3))
    transcript, warning = pipe.read()
    assert isinstance(transcript, ev.Transcript) and transcript.turn_id == 3
    assert text.startswith(transcript.text.rsplit(" [", 1)[0]) and "cut" in transcript.text
    assert len(codec.encode(transcript)) <= limit
    assert isinstance(warning, ev.Warning) and warning.code == errors.WORKER_MESSAGE_TOO_LARGE
    call = ev.ToolCall("save", "t-9", {"text": "z" * 9000})
    assert not pipe.outbox.fits(call)
    assert not pipe.outbox.send(call)
    (refused,) = pipe.read()
    assert isinstance(refused, ev.Warning) and "save" in refused.message and "t-9" in refused.message


def test_closed_waits_for_the_host_to_take_the_backlog(pipe: Pipe) -> None:
    fill(pipe)
    error = ev.Error(errors.SERVICE_FATAL, "the end", recoverable=False)
    pipe.outbox.send(error)
    got: list[object] = []

    def host() -> None:
        time.sleep(0.3)  # a host that polls again a little later
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(isinstance(e, ev.StateChanged) for e in got):
            got.extend(pipe.read())
            time.sleep(0.01)

    thread = threading.Thread(target=host)
    thread.start()
    pipe.outbox.send(ev.StateChanged(ev.BridgeState.CLOSED))  # the worker exits right after this
    assert pipe.outbox.backlog == 0
    thread.join()
    assert [e for e in got if not isinstance(e, ev.AudioOut | ev.Warning)] == [
        error, ev.StateChanged(ev.BridgeState.CLOSED)]


# ---------------------------------------------------------------------------------------- through the bridge
SMALL_RING = 64 * 1024  # the smallest outbound ring allowed


def _scenario(tmp: Path, **data: object) -> str:
    path = tmp / "scenario.json"
    path.write_text(json.dumps({"seed": 3, **data}))
    return str(path)


WEATHER = Tool("get_weather", "weather", {"type": "object"})


def test_a_host_that_stops_polling_during_a_reply_still_finds_its_tool_call(tmp_path: Path) -> None:
    config = BridgeConfig(
        session=SessionSettings(turn_sensitivity="HIGH", tools=(WEATHER,)), outbound_capacity=SMALL_RING,
        fake=FakeOptions(time_scale=0.5,
                         scenario=_scenario(tmp_path, turns=[{}, {"tool": "get_weather", "arguments": {"c": 1}}])))
    with SonicBridge(config) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY))
        # From here the host does not poll: the reply (1.5 s of float32 audio, 144 KB) overflows the ring,
        # then the user asks again and the model calls a tool while the ring is still full.
        bridge.push_audio(tone16(1.5) + silence16(0.8), 16000)
        time.sleep(2.0)
        bridge.push_audio(tone16(0.5, freq=500) + silence16(0.8), 16000)
        time.sleep(2.0)
        events = run_until(bridge, lambda es: any(isinstance(e, ev.ToolCall) for e in es))
        warnings = [e for e in events if isinstance(e, ev.Warning) and e.code == errors.WORKER_RING_FULL]
        assert warnings and all("reply audio" in w.message for w in warnings)  # the loss is reported, and what
        (call,) = [e for e in events if isinstance(e, ev.ToolCall)]
        first_end = next(i for i, e in enumerate(events) if isinstance(e, ev.TurnEnded))
        reply = events[first_end].response_id  # type: ignore[union-attr]
        assert first_end < events.index(call)
        assert not [e for e in events[first_end:] if isinstance(e, ev.AudioOut) and e.response_id == reply]
        assert bridge.send_tool_result(call.tool_use_id, {"temp": 4})
        events = run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es))
        assert not [e for e in events if isinstance(e, ev.Error)]
        assert any(isinstance(e, ev.Transcript) and '"temp": 4' in e.text for e in events)


def test_reply_audio_larger_than_half_the_ring_arrives_whole(tmp_path: Path) -> None:
    # 400 ms service chunks become 38 400 bytes of float32 at 24 kHz: more than half of a 64 KiB ring.
    config = BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH"), outbound_capacity=SMALL_RING,
                          fake=FakeOptions(time_scale=0.5, scenario=_scenario(tmp_path, audio_chunk_ms=400)))
    with SonicBridge(config) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY))
        bridge.push_audio(tone16(1.2) + silence16(0.8), 16000)
        events = run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es))
        heard = sum(e.duration for e in events if isinstance(e, ev.AudioOut))
        assert heard == pytest.approx(1.2, abs=0.05)
        assert not [e for e in events if isinstance(e, ev.Error | ev.Warning)]


def test_a_transcript_or_tool_call_too_large_for_the_ring_is_reported_and_the_conversation_goes_on(
    tmp_path: Path,
) -> None:
    long_reply = "word " * 8000  # 40 KB: over the 32 KiB message limit of a 64 KiB ring
    note = Tool("save_note", "keep a note", {"type": "object"})
    turns = [{"reply_text": long_reply}, {"tool": "save_note", "arguments": {"text": "n" * 40_000}}]
    config = BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH", tools=(note,)),
                          outbound_capacity=SMALL_RING,
                          fake=FakeOptions(time_scale=0.5, scenario=_scenario(tmp_path, turns=turns)))
    with SonicBridge(config) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY))
        bridge.push_audio(tone16(0.5) + silence16(0.8), 16000)
        events = run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es))
        said = [e for e in events if isinstance(e, ev.Transcript) and e.role is ev.Role.ASSISTANT]
        assert said and all(e.text.startswith("word word") and "cut" in e.text for e in said)
        assert any(isinstance(e, ev.Warning) and e.code == errors.WORKER_MESSAGE_TOO_LARGE for e in events)
        bridge.push_audio(tone16(0.5) + silence16(0.8), 16000)
        events = run_until(bridge, lambda es: any(isinstance(e, ev.TurnEnded) for e in es))
        (refused,) = [e for e in events if isinstance(e, ev.Warning) and e.code == errors.WORKER_MESSAGE_TOO_LARGE]
        assert "save_note" in refused.message
        assert not [e for e in events if isinstance(e, ev.ToolCall | ev.Error)]
        # The bridge answered the model for the host, so the turn was not left waiting for a result.
        assert any(isinstance(e, ev.Transcript) and "too large" in e.text for e in events)
