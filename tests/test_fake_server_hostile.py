"""The fake server against hostile clients: each is answered or dropped on its own, the others go on.

The server runs as a subprocess (tests/fake_server.py) so its memory can be read with psutil; hostile
clients speak raw HTTP/2 (tests/h2_client.py), the good client is the unmodified SDK.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import psutil
import pytest

from sonic_bridge.engines.sonic.protocol import SonicSession
from sonic_bridge.settings import SessionSettings
from tests.fake_driver import silence16, tone16
from tests.fake_server import fake_server
from tests.h2_client import RawClient, RawStream, signed
from tests.helpers import end_process

needs_sdk = pytest.mark.skipif(not importlib.util.find_spec("aws_sdk_bedrock_runtime"), reason="needs the AWS SDK")

MiB = 1024 * 1024


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def started(stream: RawStream) -> bool:
    return "completionStart" in stream.names()


async def open_session(client: RawClient, session: SonicSession) -> RawStream:
    stream = await client.open()
    await client.send_events(stream, session.start())
    return stream


async def typed_turn(client: RawClient, stream: RawStream, session: SonicSession, text: str) -> None:
    replies = len([n for n in stream.names() if n == "usageEvent"])
    await client.send_events(stream, session.text(text))
    await client.wait(lambda: stream.names().count("usageEvent") > replies or bool(stream.exceptions))
    assert not stream.exceptions, stream.exceptions


def corrupt(frame: bytes) -> bytes:
    """The same frame with its message CRC broken (the prelude stays valid)."""
    return frame[:-4] + struct.pack(">I", (struct.unpack(">I", frame[-4:])[0] ^ 1))


MALFORMED = {
    "message CRC": lambda s: corrupt(signed(s.start()[0])),
    "prelude CRC": lambda s: b"\0\0\0\x20\0\0\0\0" + b"\xff" * 24,
    "inner event not JSON": lambda s: signed_inner(b"{not json"),
    "event body not an object": lambda s: b"".join(map(signed, s.start())) + signed({"event": {"textInput": "x"}}),
    "audio not base64": lambda s: b"".join(map(signed, s.start())) + signed(
        {"event": {"audioInput": {"promptName": s.prompt_name, "contentName": s.audio_content_name, "content": 7}}}),
    "event not an object": lambda s: signed({"event": ["sessionStart"]}),
}


def signed_inner(body: bytes) -> bytes:
    from sonic_bridge.fake import eventstream as es
    from tests.h2_client import envelope

    inner = es.encode_message(es.string_headers(message_type="event", event_type="chunk"), body)
    return envelope(inner)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_frame_is_answered_on_its_own_stream_and_the_connection_serves_the_others(
    kind: str, tmp_path: Path
) -> None:
    async def main(url: str, ca: str) -> None:
        client = await RawClient(url, ca).connect()
        try:
            good_session = SonicSession(SessionSettings())
            good = await open_session(client, good_session)
            await client.wait(lambda: started(good))
            bad = await client.open()
            await client.send(bad, MALFORMED[kind](SonicSession(SessionSettings())))
            await client.wait(lambda: (bool(bad.exceptions) and bad.ended) or client.closed.is_set())
            assert bad.exceptions[0][0] == "validationException", bad.exceptions
            assert bad.exceptions[0][1]["message"], bad.exceptions
            # The other stream on the same connection goes on conversing.
            await typed_turn(client, good, good_session, "still there?")
            assert not client.closed.is_set()
        finally:
            await client.close()

    with fake_server(tmp_path) as server:
        run(main(server.url, server.ca))


# ---------------------------------------------------------------------------------------------- the good client
async def converse(url: str, ca: str, turns: int) -> dict[str, Any]:
    """The unmodified SDK holds a conversation: spoken turns, then a typed one. Returns what it got."""
    from tests.sdk_driver import SdkConversation

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    session = SonicSession(SessionSettings(turn_sensitivity="HIGH"))
    started_at = time.monotonic()
    try:
        async with SdkConversation(None, endpoint=url, ca_file=ca) as conv:
            await conv.send(session.start())
            await conv.wait_for("completionStart", timeout=20)
            for k in range(turns):
                pcm = tone16(0.4, freq=200 + 40 * k) + silence16(0.5)  # the server's --time-scale 0.2: pause 0.3 s
                for i in range(0, len(pcm), 3200):
                    await conv.send(session.audio(pcm[i : i + 3200]))
                    await asyncio.sleep(0.01)
                await conv.wait_for("usageEvent", k + 1, timeout=20)
            await conv.send(session.text("are you still with me?"))
            await conv.wait_for("usageEvent", turns + 1, timeout=20)
            await conv.send(session.close())
    except Exception as exc:  # reported to the test, which asserts on it
        return {"error": repr(exc), "names": [], "texts": []}
    names = [next(iter(o["event"])) for o in conv.outputs]
    texts = [o["event"]["textOutput"]["content"] for o in conv.outputs if "textOutput" in o["event"]]
    return {"error": repr(conv.error) if conv.error else "", "names": names, "texts": texts,
            "seconds": time.monotonic() - started_at}


GOOD_CLIENT = ("import asyncio, json, sys; from tests.test_fake_server_hostile import converse; "
               "print(json.dumps(asyncio.run(converse(sys.argv[1], sys.argv[2], int(sys.argv[3])))))")
ROOT = Path(__file__).resolve().parent.parent


def good_client(url: str, ca: str, turns: int) -> subprocess.Popen[str]:
    """The good client in its own process (the CRT keeps process-wide state; the test's fds stay clean)."""
    return subprocess.Popen([sys.executable, "-c", GOOD_CLIENT, url, ca, str(turns)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def outcome(proc: subprocess.Popen[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if proc.poll() is None:
        end_process(proc)
        raise AssertionError(f"the good client did not finish in {timeout} s")
    out, err = proc.communicate()
    end_process(proc)
    lines = out.strip().splitlines()
    assert lines, f"the good client printed nothing: {err[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def conversed(result: dict[str, Any], turns: int) -> bool:
    return (not result["error"] and result["names"].count("usageEvent") == turns + 1
            and 'You wrote "are you still with me?" in turn ' in " ".join(result["texts"]))


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


FAST = ("--time-scale", "0.2")  # turns end after 0.3 s of silence; replies come quickly


# ---------------------------------------------------------------------------------------------- 13: zero window
@needs_sdk
def test_clients_that_never_take_their_output_lose_their_streams_and_free_the_quota(tmp_path: Path) -> None:
    async def main(url: str, ca: str) -> None:
        hostile = await RawClient(url, ca, window=0).connect()  # the server may send it no DATA at all
        try:
            streams = []
            for _ in range(20):  # the whole quota of the endpoint
                stream = await hostile.open()
                await hostile.send_events(stream, SonicSession(SessionSettings()).start())
                streams.append(stream)
            await hostile.wait(lambda: all(s.status == "200" for s in streams))
            throttled = await outcome(good_client(url, ca, 1))
            assert "ThrottlingException" in throttled["error"], throttled  # the quota is really held
            await hostile.wait(lambda: all(s.reset is not None for s in streams), timeout=20)
            assert {s.reset for s in streams} == {8}  # CANCEL
            result = await outcome(good_client(url, ca, 2))
            assert conversed(result, 2), result
        finally:
            await hostile.close()

    with fake_server(tmp_path, *FAST, "--stall-timeout", "2") as server:
        run(main(server.url, server.ca))


# ---------------------------------------------------------------------------------------------- 14: floods
def test_a_text_flood_in_one_content_block_is_refused_and_the_server_does_not_grow(tmp_path: Path) -> None:
    async def main(url: str, ca: str, pid: int) -> None:
        client = await RawClient(url, ca).connect()
        try:
            session = SonicSession(SessionSettings())
            stream = await open_session(client, session)
            await client.wait(lambda: started(stream))
            before = rss(pid)
            name = session.prompt_name
            await client.send_events(stream, [{"event": {"contentStart": {
                "promptName": name, "contentName": "flood", "type": "TEXT", "role": "USER", "interactive": True,
                "textInputConfiguration": {"mediaType": "text/plain"}}}}])
            piece = signed({"event": {"textInput": {"promptName": name, "contentName": "flood",
                                                    "content": "x" * (MiB // 2)}}})
            sent = 0
            while sent < 150 * MiB and not stream.ended:  # 150 MB unless the server stops it
                await client.send(stream, piece)
                sent += len(piece)
            await client.wait(lambda: stream.ended)
            grown = rss(pid) - before
            print(f"text flood: sent {sent / MiB:.0f} MiB, server RSS {before / MiB:.0f} -> "
                  f"{(before + grown) / MiB:.0f} MiB")
            assert stream.exceptions and "larger than 4194304 bytes" in stream.exceptions[0][1]["message"]
            assert sent < 10 * MiB, sent  # refused as soon as the block passed the limit
            assert grown < 40 * MiB
        finally:
            await client.close()

    with fake_server(tmp_path, "--max-content-bytes", str(4 * MiB)) as server:
        run(main(server.url, server.ca, server.pid))


def test_an_event_larger_than_the_limit_is_refused_at_its_first_bytes(tmp_path: Path) -> None:
    async def main(url: str, ca: str) -> None:
        client = await RawClient(url, ca).connect()
        try:
            stream = await client.open()
            header = struct.pack(">II", 16 * MiB, 0)
            await client.send(stream, header + struct.pack(">I", zlib.crc32(header)) + bytes(60000))
            await client.wait(lambda: stream.ended)  # without sending the other 16 MB
            assert "larger than the limit of 262144 bytes" in stream.exceptions[0][1]["message"]
        finally:
            await client.close()

    with fake_server(tmp_path, "--max-event-bytes", str(256 * 1024)) as server:
        run(main(server.url, server.ca))


def test_input_held_across_the_streams_of_one_connection_is_capped(tmp_path: Path) -> None:
    async def main(url: str, ca: str) -> None:
        client = await RawClient(url, ca).connect()
        try:
            streams = []
            for _ in range(3):  # each holds 400 kB of an unfinished 500 kB event: 1.2 MB together
                stream = await client.open()
                header = struct.pack(">II", 500_000, 0)
                await client.send(stream, header + struct.pack(">I", zlib.crc32(header)) + bytes(400_000))
                streams.append(stream)
            await client.wait(lambda: streams[2].ended)
            assert "more than the limit of 1048576 bytes" in streams[2].exceptions[0][1]["message"]
            assert not streams[0].ended and not streams[1].ended
        finally:
            await client.close()

    with fake_server(tmp_path, "--max-buffered-input", str(MiB)) as server:
        run(main(server.url, server.ca))


def test_a_stream_that_never_completes_an_event_times_out_and_frees_its_place(tmp_path: Path) -> None:
    async def main(url: str, ca: str) -> None:
        client = await RawClient(url, ca).connect()
        try:
            dribbler = await client.open()  # the endpoint's only place (max_streams 1)
            frame = signed(SonicSession(SessionSettings()).start()[0])
            for byte in frame[:-1]:  # bytes keep coming, the event never completes
                await client.send(dribbler, bytes([byte]))
                if dribbler.ended:
                    break
                await asyncio.sleep(0.1)
            assert dribbler.exceptions == [("validationException", {"message": "Timed out waiting for input events"})]
            second = await client.open()
            await client.wait(lambda: second.status is not None)
            assert second.status == "200"
        finally:
            await client.close()

    scenario = tmp_path / "one.json"
    scenario.write_text('{"max_streams": 1, "input_timeout_s": 2.0}')
    with fake_server(tmp_path, "--scenario", str(scenario)) as server:
        run(main(server.url, server.ca))


# ---------------------------------------------------------------------------------------------- 16: idle clients
def _headers_block(client: RawClient) -> bytes:
    import hpack

    return hpack.Encoder().encode([(":method", "POST"), (":scheme", "https"), (":authority", "x"),
                                   (":path", "/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream")])


@pytest.mark.parametrize("how", ["nothing after the preface", "slow headers", "no TLS handshake"])
def test_an_idle_connection_is_closed_after_the_idle_timeout(how: str, tmp_path: Path) -> None:
    import hyperframe.frame as hf

    async def main(url: str, ca: str) -> float:
        start = time.monotonic()
        if how == "no TLS handshake":
            reader, writer = await asyncio.open_connection(*url.removeprefix("https://").split(":"))
            try:
                assert await asyncio.wait_for(reader.read(), 10) == b""
            finally:
                writer.close()
            return time.monotonic() - start
        client = await RawClient(url, ca).connect()
        try:
            if how == "slow headers":  # a header block that never ends, one byte every 0.2 s
                block = _headers_block(client)
                first = hf.HeadersFrame(1, data=block[:1])
                client.write_raw(first.serialize())
                for i in range(1, 60):
                    if client.closed.is_set():
                        break
                    client.write_raw(hf.ContinuationFrame(1, data=block[i % len(block) : i % len(block) + 1])
                                     .serialize())
                    await asyncio.sleep(0.2)
            await client.wait(client.closed.is_set, timeout=10)
        finally:
            await client.close()
        return time.monotonic() - start

    with fake_server(tmp_path, "--idle-timeout", "1.5") as server:
        took = run(main(server.url, server.ca))
    assert 1.4 < took < 6, took


# ---------------------------------------------------------------------------------------------- 16: deaf clients
PING = b"\0\0\x08\x06\0\0\0\0\0" + b"12345678"  # an HTTP/2 PING frame: the server must answer each


def established(pid: int) -> int:
    return sum(c.status == psutil.CONN_ESTABLISHED for c in psutil.Process(pid).net_connections(kind="tcp"))


def test_a_client_that_reads_nothing_is_dropped_and_the_server_stops_reading_from_it(tmp_path: Path) -> None:
    async def main(url: str, ca: str, pid: int) -> None:
        deaf = await RawClient(url, ca, read=False, rcvbuf=4096).connect()
        try:
            before = rss(pid)
            sent = await deaf.flood(PING, 64 * MiB)  # each PING is answered; the answers pile up unread
            grown = rss(pid) - before
            print(f"ping flood: {sent / MiB:.1f} MiB taken before the server stopped reading; "
                  f"RSS +{grown / MiB:.1f} MiB")
            assert sent < 32 * MiB and grown < 20 * MiB
            deadline = time.monotonic() + 15
            while established(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not established(pid)  # dropped after the stall timeout, though it never closed
        finally:
            await deaf.close()

    with fake_server(tmp_path, "--stall-timeout", "1.5", "--idle-timeout", "30") as server:
        run(main(server.url, server.ca, server.pid))


# ---------------------------------------------------------------------------------------------- all at once
async def hostile_crowd(url: str, ca: str, clients: list[RawClient]) -> dict[str, int]:
    """Malformed frames, zero windows, slow headers, a client that reads nothing, floods: all at once.

    The clients are left open in ``clients``: the server must drop them by itself.
    """
    import hyperframe.frame as hf

    counts = {"malformed": 0, "zero_window_streams": 0, "text_flood_kb": 0, "ping_flood_kb": 0, "slow": 0}
    # Malformed frames on streams of one connection, a good stream beside them.
    mixed = await RawClient(url, ca).connect()
    clients.append(mixed)
    good_session = SonicSession(SessionSettings())
    good = await open_session(mixed, good_session)
    for kind in sorted(MALFORMED) * 3:
        bad = await mixed.open()
        await mixed.send(bad, MALFORMED[kind](SonicSession(SessionSettings())))
        counts["malformed"] += 1
    # Zero windows: streams whose output the client never takes.
    for _ in range(3):
        stingy = await RawClient(url, ca, window=0).connect()
        clients.append(stingy)
        for _ in range(4):
            stream = await stingy.open()
            await stingy.send_events(stream, SonicSession(SessionSettings()).start())
            counts["zero_window_streams"] += 1
    # Slow headers: a header block begun and never finished.
    for _ in range(5):
        slow = await RawClient(url, ca).connect()
        clients.append(slow)
        slow.write_raw(hf.HeadersFrame(1, data=_headers_block(slow)[:2]).serialize())
        counts["slow"] += 1
    # A client that reads nothing and floods PINGs (each answered by the server).
    deaf = await RawClient(url, ca, read=False, rcvbuf=4096).connect()
    clients.append(deaf)
    counts["ping_flood_kb"] = await deaf.flood(PING, 32 * MiB) // 1000
    # A text flood on its own connection, one content block after another.
    flood = await RawClient(url, ca).connect()
    clients.append(flood)
    for _ in range(3):
        session = SonicSession(SessionSettings())
        stream = await open_session(flood, session)
        await flood.send_events(stream, [{"event": {"contentStart": {
            "promptName": session.prompt_name, "contentName": "f", "type": "TEXT", "role": "USER",
            "interactive": True, "textInputConfiguration": {"mediaType": "text/plain"}}}}])
        piece = signed({"event": {"textInput": {"promptName": session.prompt_name, "contentName": "f",
                                                "content": "x" * 200_000}}})
        for _ in range(50):
            if stream.ended:
                break
            await flood.send(stream, piece)
            counts["text_flood_kb"] += len(piece) // 1000
        await flood.wait(lambda: stream.ended)  # noqa: B023
        assert "larger than" in stream.exceptions[0][1]["message"]
    # The good stream on the malformed connection still converses, then ends as a client should.
    await typed_turn(mixed, good, good_session, "through all that?")
    assert 'You wrote "through all that?" in turn' in " ".join(good.texts())
    assert not mixed.closed.is_set()
    await mixed.send_events(good, good_session.close())
    await mixed.end(good)
    return counts


@needs_sdk
def test_a_hostile_crowd_next_to_a_good_sdk_client_which_keeps_conversing_in_bounded_memory(
    tmp_path: Path
) -> None:
    async def main(url: str, ca: str, pid: int) -> None:
        warm = await outcome(good_client(url, ca, 1))  # the server's code paths warmed once
        assert conversed(warm, 1), warm
        before = rss(pid)
        good = good_client(url, ca, 6)
        clients: list[RawClient] = []
        try:
            crowd = await hostile_crowd(url, ca, clients)
            result = await outcome(good)
            during = rss(pid)
            deadline = time.monotonic() + 20  # past the stall and idle timeouts: the server drops them all
            while established(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            left = established(pid)
            after = rss(pid)
        finally:
            for client in clients:
                await client.close()
        print(f"hostile crowd {crowd}: server RSS before {before / MiB:.1f} MiB, right after "
              f"{during / MiB:.1f} MiB, {after / MiB:.1f} MiB once the server had dropped them")
        assert conversed(result, 6), result
        assert left == 0, f"{left} hostile connections were not dropped"
        assert after - before < 60 * MiB

    with fake_server(tmp_path, *FAST, "--stall-timeout", "1.5", "--idle-timeout", "2",
                     "--max-content-bytes", str(2 * MiB)) as server:
        run(main(server.url, server.ca, server.pid))
