"""``sonic-bridge doctor``: checks what a bridge needs, names each problem with its fix.

Interpreter facts, the SDK install and the credentials are checked inside the worker's interpreter
(that is where they must work), by a small probe. Credentials are reported by presence and source,
never by value. Last, a real session round trip to the configured endpoint (or the fake).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sonic_bridge import events as ev
from sonic_bridge.client import SonicBridge
from sonic_bridge.config import BridgeConfig

PROBE = r"""
import json, sys
out = {"python": list(sys.version_info[:3]), "executable": sys.executable}
try:
    import sonic_bridge
    out["sonic_bridge"] = sonic_bridge.__version__
except Exception as exc:
    out["sonic_bridge_error"] = repr(exc)
try:
    import importlib.metadata as md
    import aws_sdk_bedrock_runtime, awscrt, smithy_http.aio.crt  # noqa: F401
    out["sdk"] = md.version("aws-sdk-bedrock-runtime")
    out["awscrt"] = md.version("awscrt")
except Exception as exc:
    out["sdk_error"] = repr(exc)
try:
    import boto3
    session = boto3.Session(profile_name=sys.argv[1] or None)
    creds = session.get_credentials()
    out["credentials"] = None if creds is None else getattr(creds, "method", "unknown")
    out["expires"] = str(getattr(creds, "_expiry_time", "") or "")
except Exception as exc:
    out["credentials_error"] = repr(exc)
print(json.dumps(out))
"""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def probe(python: str, profile: str | None) -> dict[str, object]:
    try:
        proc = subprocess.run([python, "-c", PROBE, profile or ""], capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_checks(config: BridgeConfig, report: Callable[[Check], None], round_trip_timeout: float = 30.0) -> bool:
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        report(check)

    add(Check("host interpreter", sys.version_info >= (3, 11), f"Python {sys.version.split()[0]} ({sys.executable})",
              "use Python 3.11 or later for the host"))
    facts = probe(config.python, config.profile)
    if "error" in facts:
        add(Check("worker interpreter", False, f"{config.python}: {facts['error']}",
                  "set worker_python to a working Python >= 3.12 that has sonic-bridge installed"))
        return False
    raw_version = facts.get("python")
    version = tuple(int(v) for v in raw_version) if isinstance(raw_version, list) else (0,)
    needs_sdk = config.backend == "aws" or config.fake.via_sdk
    add(Check("worker interpreter", "sonic_bridge" in facts and (version >= (3, 12) or not needs_sdk),
              f"Python {'.'.join(map(str, version))} at {facts['executable']}, sonic-bridge "
              f"{facts.get('sonic_bridge', 'missing')}",
              "the AWS SDK needs Python >= 3.12: set worker_python to one, with `pip install 'sonic-bridge[aws]'`"))
    if needs_sdk:
        add(Check("AWS SDK", "sdk" in facts and str(facts.get("sdk", "")).startswith("0.12"),
                  f"aws-sdk-bedrock-runtime {facts.get('sdk', 'missing')}, awscrt {facts.get('awscrt', 'missing')}",
                  "install the tested line into the worker: pip install 'sonic-bridge[aws]'"))
        source = facts.get("credentials")
        add(Check("credentials", bool(source), f"found, from {source}" + (
            f" (expire {facts['expires']})" if facts.get("expires") else "") if source else "none found",
                  "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile (AWS_PROFILE / --profile), "
                  "or run `aws sso login`"))
    if not all(c.ok for c in checks):
        return False
    add(round_trip(config, round_trip_timeout))
    return all(c.ok for c in checks)


def round_trip(config: BridgeConfig, timeout: float) -> Check:
    """Open a session, speak one short utterance, and wait for any reply from the model."""
    t = np.arange(16000) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    audio = np.concatenate([speech, np.zeros(int(2.5 * 16000), np.float32)])
    start = time.monotonic()
    ready_at = None
    where = config.endpoint or ("the built-in fake Sonic" if config.backend == "fake" else
                                f"bedrock-runtime.{config.region}")
    with SonicBridge(config) as bridge:
        i = 0
        while time.monotonic() - start < timeout:
            if ready_at is not None and i < len(audio):
                bridge.push_audio(audio[i : i + 320], 16000)
                i += 320
            elif ready_at is not None:
                bridge.push_audio(np.zeros(320, np.float32), 16000)
            for event in bridge.poll():
                if isinstance(event, ev.StateChanged) and event.state is ev.BridgeState.READY and ready_at is None:
                    ready_at = time.monotonic() - start
                elif isinstance(event, ev.Error) and not event.recoverable:
                    return Check("session round trip", False, f"{where}: {event.code}: {event.message}",
                                 "see the message: credentials, model access (Bedrock console), region, endpoint")
                elif isinstance(event, ev.AudioOut | ev.Transcript) and ready_at is not None:
                    return Check("session round trip", True,
                                 f"{where}: ready in {ready_at * 1000:.0f} ms, the model answered after "
                                 f"{time.monotonic() - start:.1f} s")
            time.sleep(0.02)
    return Check("session round trip", False, f"{where}: no answer within {timeout:.0f} s",
                 "check the endpoint and network; `--endpoint` and `--ca-file` for a fake server")
