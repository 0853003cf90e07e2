"""Each start-up failure reaches the host as an error event with a stable code, in bounded time."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from sonic_bridge import BridgeConfig, SonicBridge
from sonic_bridge import events as ev
from tests.fake_server import fake_server

pytest.importorskip("aws_sdk_bedrock_runtime")
pytestmark = pytest.mark.sdk


@pytest.fixture
def isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere but what a test sets: no env keys, no files, no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def first_terminal_error(config: BridgeConfig, limit: float) -> tuple[list[ev.Error], float]:
    start = time.monotonic()
    errors: list[ev.Error] = []
    with SonicBridge(config) as bridge:
        while time.monotonic() - start < limit:
            errors += [e for e in bridge.poll() if isinstance(e, ev.Error)]
            if any(not e.recoverable for e in errors):
                break
            time.sleep(0.02)
    return errors, time.monotonic() - start


def test_no_credentials(isolated_aws: None) -> None:
    errors, took = first_terminal_error(BridgeConfig(backend="aws", endpoint="https://127.0.0.1:9"), 15)
    assert [(e.code, e.recoverable) for e in errors] == [("no_credentials", False)]
    assert "AWS_ACCESS_KEY_ID" in errors[0].message and took < 10


@pytest.mark.parametrize(("fail_open", "code", "hint"), [
    ("access_denied", "access_denied", "model access"),
    ("invalid_model", "invalid_model", "check model_id and region"),
])
def test_service_refusals(isolated_aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                          fail_open: str, code: str, hint: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with fake_server(tmp_path, "--fail-open", fail_open) as server:
        errors, took = first_terminal_error(BridgeConfig(backend="aws", endpoint=server.url, ca_file=server.ca), 15)
    assert [(e.code, e.recoverable) for e in errors] == [(code, False)]
    assert hint in errors[0].message and took < 10


def test_a_wrong_secret_breaks_the_signature_chain(isolated_aws: None, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with fake_server(tmp_path, "--verify-secret", "the-secret") as server:
        errors, _ = first_terminal_error(BridgeConfig(backend="aws", endpoint=server.url, ca_file=server.ca), 15)
    assert errors[-1].code == "access_denied" and "signature" in errors[-1].message


def test_unreachable_endpoint_retries_then_gives_up(isolated_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    errors, took = first_terminal_error(
        BridgeConfig(backend="aws", endpoint="https://127.0.0.1:9", max_reconnects=2), 20)
    assert [e.code for e in errors] == ["endpoint_unreachable"] * 2 + ["reconnect_limit"]
    assert [e.recoverable for e in errors] == [True, True, False] and took < 10


@pytest.mark.slow
def test_an_untrusted_certificate_is_a_tls_failure(isolated_aws: None, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with fake_server(tmp_path) as server:  # its CA is not given to the bridge
        # s2n blinds TLS errors for 10-30 s; the bridge's connect_timeout bounds the wait either way.
        errors, took = first_terminal_error(BridgeConfig(backend="aws", endpoint=server.url, connect_timeout=40), 45)
    assert errors[-1].code == "tls_failure" and not errors[-1].recoverable
    assert "CA file" in errors[-1].message and took < 41


def test_close_is_bounded_when_the_service_never_answers(isolated_aws: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def black_hole() -> None:  # accepts connections and never says a word
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=black_hole)
    thread.start()
    try:
        bridge = SonicBridge(BridgeConfig(backend="aws", endpoint=f"https://127.0.0.1:{listener.getsockname()[1]}"))
        bridge.start()
        time.sleep(1.5)  # the worker is stuck opening the stream
        start = time.monotonic()
        bridge.close(timeout=1.0)
        assert time.monotonic() - start < 2.0
        assert bridge.state is ev.BridgeState.CLOSED and bridge.worker_pid is None
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_the_endpoint_comes_from_the_config_then_the_environment_then_the_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sonic_bridge.engines.aws import endpoint_for

    monkeypatch.delenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", raising=False)
    assert endpoint_for(BridgeConfig(region="eu-north-1")) == "https://bedrock-runtime.eu-north-1.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "https://env.example:8443")
    assert endpoint_for(BridgeConfig()) == "https://env.example:8443"
    assert endpoint_for(BridgeConfig(endpoint="https://cfg.example")) == "https://cfg.example"
