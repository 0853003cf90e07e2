"""Starting a worker as users meet it: the wrong interpreter, the wrong version, a busy machine, a hang."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SonicBridge, __version__
from sonic_bridge import events as ev
from sonic_bridge.ipc.handshake import RING_PROTOCOL
from tests.helpers import busy_cores

ROOT = Path(__file__).resolve().parent.parent


def events_until_closed(bridge: SonicBridge, limit: float) -> list[ev.Event]:
    events: list[ev.Event] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not bridge.closed:
        events += bridge.poll()
        time.sleep(0.02)
    return events + bridge.poll()


def wrapper(tmp_path: Path, body: str) -> str:
    script = tmp_path / "worker-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize(("claimed", "says"), [
    ("0.0.1", f"the worker runs sonic-bridge 0.0.1 (ring protocol {RING_PROTOCOL}) at {sys.executable}, the host "
              f"sonic-bridge {__version__}"),
    ("none", "did not introduce itself: its sonic-bridge is older than the handshake"),
])
def test_a_worker_of_another_version_ends_the_start_with_a_terminal_error(tmp_path: Path, claimed: str,
                                                                          says: str) -> None:
    impostor = wrapper(tmp_path, f'IMPOSTOR_VERSION={claimed} exec {sys.executable} '
                                 f'{ROOT}/tests/impostor_worker.py "$@"')
    bridge = SonicBridge(BridgeConfig(worker_python=impostor, worker_env={"PYTHONPATH": str(ROOT)})).start()
    events = events_until_closed(bridge, 15)
    errors = [e for e in events if isinstance(e, ev.Error)]
    assert [(e.code, e.recoverable) for e in errors] == [("version_mismatch", False)]
    assert says in errors[0].message and "sonic-bridge worker-env" in errors[0].message
    assert bridge.stats().restarts == 0 and bridge.close_reason == errors[0]
    assert events[-1] == ev.StateChanged(ev.BridgeState.CLOSED)


def test_a_worker_interpreter_that_is_not_python_is_named(tmp_path: Path) -> None:
    bridge = SonicBridge(BridgeConfig(worker_python="/bin/true")).start()
    errors = [e for e in events_until_closed(bridge, 15) if isinstance(e, ev.Error)]
    assert [(e.code, e.recoverable) for e in errors] == [("worker_start_failed", False)]
    assert "/bin/true exited with code 0 before it started" in errors[0].message
    assert "sonic-bridge worker-env" in errors[0].message and bridge.stats().restarts == 0


def test_a_python_without_the_workers_packages_is_named_with_the_fix() -> None:
    bare = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not bare.exists() or os.system(f"{bare} -c 'import numpy' 2>/dev/null") == 0:
        pytest.skip("needs a base interpreter without numpy")
    bridge = SonicBridge(BridgeConfig(worker_python=str(bare))).start()
    errors = [e for e in events_until_closed(bridge, 15) if isinstance(e, ev.Error)]
    assert [(e.code, e.recoverable) for e in errors] == [("worker_environment", False)]
    assert f"{bare} cannot import what the worker needs (ModuleNotFoundError: No module named 'numpy')" in (
        errors[0].message)


@pytest.mark.sdk
def test_a_slow_start_on_a_busy_machine_is_not_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    # A heartbeat this strict would be missed by any start-up that imports the SDK on a loaded machine.
    config = BridgeConfig(fake=FakeOptions(via_sdk=True), stall_timeout=0.5, kill_stalled_after=60)
    events: list[ev.Event] = []
    with busy_cores(2):
        start = time.monotonic()
        with SonicBridge(config) as bridge:
            while time.monotonic() - start < 60 and not any(
                    isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY for e in events):
                events += bridge.poll()
                time.sleep(0.02)
    assert any(isinstance(e, ev.StateChanged) and e.state is ev.BridgeState.READY for e in events), events
    assert not [e for e in events if isinstance(e, ev.Error)]


@pytest.mark.sdk
def test_a_credential_process_that_never_returns_ends_the_start_after_its_timeout(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    marker = f"never-answers-{os.getpid()}"
    config_file = tmp_path / "config"
    config_file.write_text(f"[profile hang]\ncredential_process = {sys.executable} -c \"import time; "
                           f"time.sleep(120)\" {marker}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = BridgeConfig(backend="aws", endpoint="https://127.0.0.1:9", profile="hang", startup_timeout=4)
    start = time.monotonic()
    bridge = SonicBridge(config).start()
    errors = [e for e in events_until_closed(bridge, 30) if isinstance(e, ev.Error)]
    took = time.monotonic() - start
    assert [(e.code, e.recoverable) for e in errors] == [("worker_start_timeout", False)]
    assert "resolving AWS credentials" in errors[0].message and "startup_timeout" in errors[0].message
    assert 4 <= took < 15
    time.sleep(0.2)
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert not left, "the worker's credential process outlived it"
