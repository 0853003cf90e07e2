"""Door 2 as other clients see it: older SDK lines, many concurrent streams, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.fake_server import fake_server
from tests.helpers import end_process

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("aws_sdk_bedrock_runtime")


def sdk_venv(version: str) -> Path:
    """A cached venv with one SDK line, as pipecat (0.4 / <0.10) and others pin it."""
    venv = ROOT / f".venv-sdk-{version}"
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"aws-sdk-bedrock-runtime=={version}.*"], check=True, capture_output=True)
        (venv / ".ready").write_text(version)
    return python


@pytest.mark.slow
@pytest.mark.parametrize("version", ["0.9", "0.4"])
def test_older_sdk_lines_hold_a_turn_unmodified_with_only_an_endpoint_and_a_ca_file(
    version: str, tmp_path: Path
) -> None:
    python = sdk_venv(version)
    with fake_server(tmp_path, "--verify-secret", "secret") as server:
        env = {**os.environ, "SSL_CERT_FILE": server.ca, "AWS_ACCESS_KEY_ID": "AKIDFAKE",
               "AWS_SECRET_ACCESS_KEY": "secret"}
        proc = subprocess.run([str(python), str(ROOT / "tests" / "old_sdk_client.py"), server.url], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["version"].startswith(version)
    assert summary["seen"].get("audioOutput", 0) > 0 and summary["seen"].get("completionEnd") == 1
    assert "turn 1: 1.0 seconds of speech" in summary["texts"]


def test_many_concurrent_streams_share_one_connection(tmp_path: Path) -> None:
    from sonic_bridge.engines.sonic.protocol import SonicSession
    from sonic_bridge.settings import SessionSettings
    from tests.fake_driver import silence16, tone16
    from tests.sdk_driver import SdkConversation

    async def one(server: Any) -> dict[str, int]:
        session = SonicSession(SessionSettings(turn_sensitivity="HIGH"))
        async with SdkConversation(None, endpoint=server.url, ca_file=server.ca) as conv:
            await conv.send(session.start())
            pcm = tone16(1.0) + silence16(1.8)  # a turn, then the pause that ends it
            for i in range(0, len(pcm), 3200):
                await conv.send(session.audio(pcm[i : i + 3200]))
                await asyncio.sleep(0.1)
            await conv.wait_for("usageEvent", timeout=15)
            await conv.send(session.close())
        names: dict[str, int] = {}
        for o in conv.outputs:
            key = next(iter(o["event"]))
            names[key] = names.get(key, 0) + 1
        return names

    async def many(server: Any) -> list[dict[str, int]]:
        return await asyncio.gather(*(one(server) for _ in range(12)))

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    with fake_server(tmp_path) as server:
        results = asyncio.run(many(server))
    assert len(results) == 12
    assert all(r.get("audioOutput", 0) > 0 and r.get("completionEnd") == 1 for r in results), results


def test_ctrl_c_stops_the_server_cleanly_and_removes_its_generated_ca() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "sonic_bridge.cli", "fake-server", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("LISTENING https://127.0.0.1:")
        ca = Path(proc.stdout.readline().split()[1])
        assert ca.exists()
        os.kill(proc.pid, signal.SIGINT)
        start = time.monotonic()
        assert proc.wait(5) == 0
        assert time.monotonic() - start < 2
        assert proc.stderr is not None and "stopped" in proc.stderr.read()
        assert not ca.parent.exists()  # nothing left in /tmp
    finally:
        end_process(proc)


def _start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str, Path | None]:
    proc = subprocess.Popen([sys.executable, "-m", "sonic_bridge.cli", "fake-server", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    listening = proc.stdout.readline().split()
    assert listening[:1] == ["LISTENING"], (listening, proc.stderr.read() if proc.stderr else "")
    ca = proc.stdout.readline().split()
    return proc, listening[1], Path(ca[1]) if ca[:1] == ["CA"] else None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_stops_the_server_cleanly_and_removes_its_generated_key(signum: int) -> None:
    proc, _, ca = _start()
    try:
        assert ca is not None and (ca.parent / "server.key").exists()
        os.kill(proc.pid, signum)
        assert proc.wait(5) == 0
        assert proc.stderr is not None and "stopped" in proc.stderr.read()
        assert not ca.parent.exists()  # the private key is not left in /tmp
    finally:
        end_process(proc)


def test_the_key_files_written_to_cert_dir_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "server.key").write_text("old")  # an older file keeps no wider mode
    os.chmod(tmp_path / "ca" / "server.key", 0o644)
    with fake_server(tmp_path):
        modes = {name: (tmp_path / "ca" / name).stat().st_mode & 0o777 for name in ("server.key", "server.pem")}
    assert modes == {"server.key": 0o600, "server.pem": 0o600}


async def _first_answer(url: str, ca: str) -> tuple[list[str], str]:
    from sonic_bridge.engines.sonic.protocol import SonicSession
    from sonic_bridge.settings import SessionSettings
    from tests.sdk_driver import SdkConversation

    session = SonicSession(SessionSettings())
    async with SdkConversation(None, endpoint=url, ca_file=ca) as conv:
        await conv.send(session.start())
        await conv.wait_for("completionStart", timeout=15)
        await conv.send(session.close())
    return [next(iter(o["event"])) for o in conv.outputs], repr(conv.error) if conv.error else ""


def _first_answer_in_a_subprocess(url: str, ca: str) -> tuple[list[str], str]:
    # Its own process: the CRT keeps an event loop (eventfd) alive after a refused stream.
    script = ("import asyncio, json, sys; from tests.test_fake_server import _first_answer; "
              "print(json.dumps(asyncio.run(_first_answer(sys.argv[1], sys.argv[2]))))")
    proc = subprocess.run([sys.executable, "-c", script, url, ca], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, check=True)
    names, error = json.loads(proc.stdout.strip().splitlines()[-1])
    return names, error


@pytest.mark.parametrize("source", ["file", "environment"])
def test_the_signing_secret_can_come_from_a_file_or_the_environment_off_the_command_line(
    source: str, tmp_path: Path
) -> None:
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    env = {k: v for k, v in os.environ.items() if k != "SONIC_BRIDGE_FAKE_SECRET"}
    results = {}
    for secret in ("secret", "not-the-secret"):  # tests/sdk_driver.py signs with "secret"
        args: list[str] = ["--cert-dir", str(tmp_path / "ca")]
        if source == "file":
            (tmp_path / "secret.txt").write_text(secret + "\n")
            args += ["--verify-secret-file", str(tmp_path / "secret.txt")]
        else:
            env["SONIC_BRIDGE_FAKE_SECRET"] = secret
        proc, url, ca = _start(*args, env=env)
        try:
            assert secret not in psutil.Process(proc.pid).cmdline()  # what `ps` shows every user
            results[secret] = _first_answer_in_a_subprocess(url, str(ca))
        finally:
            end_process(proc, first=signal.SIGTERM)
    names, error = results["secret"]
    assert "completionStart" in names and not error
    names, error = results["not-the-secret"]
    assert "completionStart" not in names and "signature does not match" in str(error)


@pytest.mark.parametrize(("args", "message"), [
    (["--verify-secret", "a", "--verify-secret-file", "f"], "not both"),
    (["--verify-secret-file", "/nonexistent/secret"], "--verify-secret-file /nonexistent/secret cannot be read"),
    (["--idle-timeout", "0"], "argument --idle-timeout: must be positive"),
    (["--stall-timeout", "nan"], "argument --stall-timeout: must be positive and finite"),
    (["--max-event-bytes", "1.5"], "argument --max-event-bytes: '1.5' is not a whole number"),
    (["--time-scale", "-1"], "argument --time-scale: must be positive"),
])
def test_bad_options_are_refused_with_the_option_named(args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "sonic_bridge.cli", "fake-server", "--port", "0", *args],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_help_tells_where_the_secret_can_come_from_and_the_limits_with_their_defaults() -> None:
    from sonic_bridge.fake.server import Limits

    out = subprocess.run([sys.executable, "-m", "sonic_bridge.cli", "fake-server", "--help"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    flat = " ".join(out.split())
    assert "--verify-secret-file" in flat and "$SONIC_BRIDGE_FAKE_SECRET" in flat and "process listings" in flat
    defaults = Limits()
    assert "--idle-timeout S close a connection" in flat and f"(default: {defaults.idle_timeout:g})" in flat
    assert f"(default: {defaults.stall_timeout:g})" in flat and "(default: 1 MiB)" in flat
    assert defaults.max_event_bytes == 1024 * 1024 and defaults.max_buffered_input == 8 * 1024 * 1024
    assert f"(default: {defaults.max_streams_per_connection})" in flat
    assert f"(default: {defaults.max_connections})" in flat
