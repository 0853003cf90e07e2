"""The host side on Python 3.11 with no AWS package; a 3.12 worker behind it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

HOST = os.environ.get("SONIC_BRIDGE_HOST_PYTHON")
needs_host = pytest.mark.skipif(not HOST, reason="no Python 3.11 host environment (run through scripts/test)")


def run_host(code: str, timeout: float = 120) -> str:
    assert HOST
    proc = subprocess.run([HOST, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@needs_host
def test_the_host_side_runs_on_311_and_never_imports_an_aws_package() -> None:
    out = run_host("""
        import sys, importlib.util
        assert sys.version_info[:2] == (3, 11), sys.version
        assert importlib.util.find_spec("aws_sdk_bedrock_runtime") is None, "the host env must not have the SDK"
        assert importlib.util.find_spec("botocore") is None
        import sonic_bridge, sonic_bridge.host.client, sonic_bridge.ipc.ring, sonic_bridge.ipc.codec
        import sonic_bridge.engines.sonic.protocol
        from sonic_bridge import SonicBridge, BridgeConfig
        aws = ("aws_sdk_bedrock_runtime", "smithy_core", "awscrt", "botocore")
        bad = [m for m in sys.modules if m.split(".")[0] in aws]
        print("loaded-aws:", bad)
    """)
    assert "loaded-aws: []" in out


@needs_host
def test_a_311_host_holds_a_conversation_through_a_312_worker_on_the_real_sdk() -> None:
    env_python = sys.executable  # this suite's interpreter: >= 3.12 with sonic-bridge[aws]
    assert sys.version_info >= (3, 12)
    out = run_host(f"""
        import os, sys, time
        import numpy as np
        os.environ.update(AWS_ACCESS_KEY_ID="AKIDFAKE", AWS_SECRET_ACCESS_KEY="secret")
        from sonic_bridge import SonicBridge, BridgeConfig, FakeOptions, SessionSettings, AudioOut, Transcript
        config = BridgeConfig(session=SessionSettings(turn_sensitivity="HIGH"), worker_python={env_python!r},
                              fake=FakeOptions(via_sdk=True, seed=3))
        t = np.arange(16000) / 16000
        speech = (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
        audio = np.concatenate([speech, np.zeros(int(16000 * 2.0), np.float32)])
        events = []
        with SonicBridge(config) as bridge:
            pid = bridge.worker_pid
            for i in range(0, len(audio), 320):
                bridge.push_audio(audio[i:i + 320], 16000)
                events += bridge.poll()
                time.sleep(0.02)
            deadline = time.time() + 10
            while time.time() < deadline and not any(type(e).__name__ == "TurnEnded" for e in events):
                events += bridge.poll()
                time.sleep(0.02)
        print("host", sys.version_info[:2])
        print("reply-seconds", sum(e.duration for e in events if isinstance(e, AudioOut)))
        print("texts", [e.text for e in events if isinstance(e, Transcript)])
    """)
    assert "host (3, 11)" in out
    reply = float(out.split("reply-seconds ")[1].split()[0])
    assert 0.9 < reply < 1.1, out
    assert "turn 1: 1.0 seconds of speech" in out
