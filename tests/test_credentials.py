"""Temporary credentials: the stream is recycled before they expire (a new key under an open signature
chain breaks the stream), and they are resolved from boto3's chain without being re-read per event."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from sonic_bridge import BridgeConfig, FakeOptions, SessionSettings, SonicBridge
from sonic_bridge import events as ev
from tests.fake_driver import silence16
from tests.helpers import has_state, run_until

pytest.importorskip("aws_sdk_bedrock_runtime")
pytestmark = pytest.mark.sdk


def test_the_stream_is_recycled_before_process_credentials_expire(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    helper = tmp_path / "creds.py"
    helper.write_text(textwrap.dedent(f"""
        import datetime as dt, json
        open({str(calls)!r}, "a").write("x")
        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=186)
        print(json.dumps({{"Version": 1, "AccessKeyId": "ASIAFAKE", "SecretAccessKey": "s", "SessionToken": "t",
                          "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
    """))
    (tmp_path / "config").write_text(f"[profile temp]\ncredential_process = {sys.executable} {helper}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    config = BridgeConfig(session=SessionSettings(), profile="temp", renew_after=360,
                          fake=FakeOptions(via_sdk=True))
    with SonicBridge(config) as bridge:
        run_until(bridge, has_state(ev.BridgeState.READY), timeout=20)
        # Expiry in 186 s, recycled 180 s before it: a renewal within seconds, not after 6 minutes.
        events = run_until(bridge, has_state(ev.BridgeState.RENEWING), timeout=20,
                           each_cycle=lambda _: bridge.push_audio(silence16(0.02), 16000))
        events += run_until(bridge, has_state(ev.BridgeState.READY), timeout=10)
        assert not [e for e in events if isinstance(e, ev.Error)]
    # A few resolutions (start, refreshes), never one per signed event (hundreds were signed).
    assert 1 <= len(calls.read_text()) <= 10
