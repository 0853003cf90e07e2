"""``sonic-bridge doctor --vision``: access to the vision model is checked from the worker, permissions named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_server import fake_server

pytest.importorskip("PIL")
pytest.importorskip("aws_sdk_bedrock_runtime")
pytestmark = pytest.mark.sdk


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "fake-secret"}
    return subprocess.run([sys.executable, "-m", "sonic_bridge.cli", "doctor", *args], capture_output=True,
                          text=True, timeout=240, check=False, env=env)


def test_denied_vision_access_is_named_with_the_permission_to_grant(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"looks": [{"fault": "access_denied"}]}))
    with fake_server(tmp_path, "--scenario", str(scenario)) as server:
        done = doctor("--backend", "aws", "--endpoint", server.url, "--ca-file", server.ca, "--vision")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ok      session round trip" in done.stdout  # Nova Sonic itself is fine
    line = next(x for x in done.stdout.splitlines() if "vision model us.amazon.nova-2-lite-v1:0" in x)
    assert line.startswith("PROBLEM") and "AccessDeniedException" in line
    assert "fix: grant bedrock:InvokeModel on the vision model" in done.stdout


def test_a_vision_model_that_answers_passes(tmp_path: Path) -> None:
    with fake_server(tmp_path) as server:
        done = doctor("--backend", "aws", "--endpoint", server.url, "--ca-file", server.ca,
                      "--vision", "us.amazon.nova-pro-v1:0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok      vision model us.amazon.nova-pro-v1:0: answered in" in done.stdout and "all good" in done.stdout
