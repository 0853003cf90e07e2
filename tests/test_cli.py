"""The command line as a user meets it: the demo (the README's main job), doctor, and clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from sonic_bridge.cli.demo import synth_utterance


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sonic_bridge.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


@pytest.mark.slow
def test_the_demo_holds_a_conversation_on_both_engines_and_writes_its_outputs(tmp_path: Path) -> None:
    wav = tmp_path / "me.wav"  # any rate and width: 44.1 kHz, 24-bit, stereo
    voice = synth_utterance(1.2, 44100, seed=9)
    soundfile.write(str(wav), [[s, s] for s in voice], 44100, subtype="PCM_24")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # a fresh machine: no credentials
    result = cli("demo", "--engine", "both", "--input", str(wav), "--output-dir", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    assert "| engine | turn | end of speech -> final transcript | -> first reply text | -> first reply audio" \
        in result.stdout
    assert "| sonic | 3 |" in result.stdout and "| cascade | 3 |" in result.stdout  # side by side
    assert "barge-in" in result.stderr and "bridge ready" in result.stderr  # progress while it runs
    for engine in ("sonic", "cascade"):
        out = tmp_path / "out" / engine
        summary = json.loads((out / "summary.json").read_text())
        turns = summary["turns"]
        assert [t["turn"] for t in turns] == [1, 2, 3], engine
        assert turns[1]["interrupted"] and not turns[2]["interrupted"], engine  # turn 3 cuts into reply 2
        for t in turns:  # each step of a turn comes after the one before it
            steps = [t["speech_end_to_final_transcript_ms"], t["speech_end_to_first_text_ms"],
                     t["speech_end_to_first_audio_ms"]]
            assert 0 < steps[0] <= steps[1] <= steps[2], (engine, t)
        assert summary["dropped_frames"] == 0
        reply, rate = soundfile.read(str(out / "reply.wav"))
        assert rate == 24000 and len(reply) > 24000
        assert "ASSISTANT (interrupted)" in (out / "transcript.txt").read_text()


def test_doctor_on_the_fake_is_all_good() -> None:
    result = cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok      session round trip: the built-in fake Sonic" in result.stdout


def test_doctor_names_missing_credentials_with_the_fix(tmp_path: Path) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    result = cli("doctor", "--backend", "aws", env=env)
    assert result.returncode == 1
    assert "PROBLEM credentials: none found" in result.stdout and "fix: set AWS_ACCESS_KEY_ID" in result.stdout
    assert "AKID" not in result.stdout


def test_doctor_names_a_broken_worker_interpreter() -> None:
    result = cli("doctor", "--worker-python", "/bin/false")
    assert result.returncode == 1 and "PROBLEM worker interpreter" in result.stdout and "fix:" in result.stdout


def test_doctor_names_a_worker_of_another_version(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    impostor = tmp_path / "old-worker"
    impostor.write_text(f'#!/bin/sh\nPYTHONPATH={root} IMPOSTOR_VERSION=0.0.1 exec {sys.executable} '
                        f'{root}/tests/impostor_worker.py "$@"\n')
    impostor.chmod(0o755)
    result = cli("doctor", "--worker-python", str(impostor))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PROBLEM worker version: the worker runs sonic-bridge 0.0.1" in result.stdout
    assert "sonic-bridge worker-env" in result.stdout and "session round trip" not in result.stdout


@pytest.mark.skipif(not os.environ.get("SONIC_BRIDGE_HOST_PYTHON"), reason="needs the Python 3.11 host venv")
def test_doctor_names_a_package_that_would_leak_from_the_host_into_the_worker() -> None:
    import site

    from sonic_bridge import BridgeConfig
    from sonic_bridge.cli.doctor import Check, run_checks

    other = os.environ["SONIC_BRIDGE_HOST_PYTHON"]  # another interpreter, with its own numpy
    ours = next(p for p in site.getsitepackages() if os.path.isdir(os.path.join(p, "numpy")))
    config = BridgeConfig(worker_python=other, worker_env={"PYTHONPATH": ours})  # the mistake of the last release
    checks: list[Check] = []
    assert not run_checks(config, checks.append)
    (env_check,) = [c for c in checks if c.name == "worker environment"]
    assert not env_check.ok and "would import numpy from the host's environment" in env_check.detail


@pytest.mark.parametrize(("args", "message"), [
    (["demo", "--input", "/no/such.wav"], "cannot read /no/such.wav"),
    (["demo", "--model", "anthropic.claude-v2"], "not a Nova Sonic model"),
    (["demo", "--voice", "zed"], "'zed' is not available"),
    (["fake-server", "--cert", "x.pem"], "--cert and --key go together"),
])
def test_errors_are_one_clear_line_not_a_traceback(args: list[str], message: str) -> None:
    result = cli(*args, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("sonic-bridge: error:") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
