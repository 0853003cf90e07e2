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
    from sonic_bridge.protocol import SonicSession
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
