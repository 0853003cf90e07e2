"""Temporary credentials: the stream is recycled before they expire (a new key under an open signature
chain breaks the stream), and they are resolved from botocore's chain without being re-read per event."""

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


def test_environment_credentials_are_the_chains_own_answer_without_walking_it(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from sonic_bridge.engines.aws import ChainCredentials

    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = f\n"
                                          "[named]\naws_access_key_id = AKIDNAMED\naws_secret_access_key = n\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "e")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok")
    monkeypatch.delenv("AWS_CREDENTIAL_EXPIRATION", raising=False)
    import botocore.session

    # What botocore's chain says for each case is what the resolver says.
    for profile, key in ((None, "AKIDENV"), ("named", "AKIDNAMED")):
        chain = botocore.session.Session(profile=profile).get_credentials().get_frozen_credentials()
        assert chain.access_key == key
        resolver = ChainCredentials(profile)
        identity = asyncio.run(resolver.get_identity())
        assert (identity.access_key_id, identity.secret_access_key, identity.session_token) == (
            chain.access_key, chain.secret_key, chain.token)
        # The environment's answer needs no botocore session (a worker starts ~150 ms sooner).
        assert (resolver._session is None) == (profile is None)
    # Without the variables the chain is walked: the shared file's default profile.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    resolver = ChainCredentials(None)
    assert asyncio.run(resolver.get_identity()).access_key_id == "AKIDFILE"
    assert resolver.source == "shared-credentials-file"
