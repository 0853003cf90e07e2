"""``sonic-bridge doctor``: checks what a bridge needs, names each problem with its fix.

The worker's interpreter is checked exactly as a bridge launches it (same command line, same
environment): where each package would come from (a package of the host's leaking in is named), its
sonic-bridge version against the host's, the SDK, and the credentials (by presence and source, never by
value). Last, a real session round trip to the configured endpoint (or the fake).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sonic_bridge import events as ev
from sonic_bridge._version import __version__
from sonic_bridge.host import launch, worker_env
from sonic_bridge.host.client import SonicBridge
from sonic_bridge.host.config import BridgeConfig


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _chosen(config: BridgeConfig) -> str:
    """How the bridge picks the worker's interpreter, so the report says where it looked."""
    if config.worker_python:
        return "worker_python"
    if sys.version_info >= (3, 12):
        return "the host's own (Python >= 3.12)"
    place = launch.default_worker_env_dir()
    if config.python != sys.executable:
        return f"the worker environment at {place}"
    return f"the host's own: no worker environment at {place}"


def run_checks(config: BridgeConfig, report: Callable[[Check], None], round_trip_timeout: float = 30.0) -> bool:
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        report(check)

    env_fix = ("run `sonic-bridge worker-env` (bridges then find it without worker_python) or set worker_python to a "
               f"Python >= 3.12 with sonic-bridge[aws]=={__version__}")
    add(Check("host interpreter", sys.version_info >= (3, 11), f"Python {sys.version.split()[0]} ({sys.executable}), "
              f"sonic-bridge {__version__}", "use Python 3.11 or later for the host"))
    python = config.python
    try:
        origins = worker_env.locate(python, config.worker_env)
    except worker_env.WorkerEnvError as exc:
        add(Check("worker interpreter", False, f"{python} ({_chosen(config)}): {exc}", env_fix))
        return False
    leaks = worker_env.leaks(origins, python)
    own = origins.modules.get("sonic_bridge", "")
    add(Check("worker environment", bool(own) and not leaks,
              "; ".join(leaks) if leaks else (f"{python} ({_chosen(config)}) imports sonic-bridge from {own}" if own
                                              else f"{python} ({_chosen(config)}) has no sonic-bridge"),
              env_fix if not leaks else "give the worker only its own packages"))
    if not own or leaks:
        return False
    try:
        facts = worker_env.probe(python, config.profile, config.worker_env)
    except worker_env.WorkerEnvError as exc:
        add(Check("worker version", False, str(exc), env_fix))
        return False
    needs_sdk = config.backend == "aws" or config.fake.via_sdk
    mismatch = facts.version_problem(python)
    add(Check("worker version", mismatch is None,
              mismatch or f"Python {'.'.join(map(str, facts.version))}, sonic-bridge {__version__} (ring protocol "
              f"{facts.facts.get('ring_protocol')}), as the host", env_fix))
    if needs_sdk:
        raw = facts.facts
        add(Check("AWS SDK", "sdk" in raw and str(raw.get("sdk", "")).startswith("0.12") and facts.version >= (3, 12),
                  f"aws-sdk-bedrock-runtime {raw.get('sdk', 'missing')}, awscrt {raw.get('awscrt', 'missing')} on "
                  f"Python {'.'.join(map(str, facts.version))}", env_fix))
        source = raw.get("credentials")
        add(Check("credentials", bool(source), f"found, from {source}" + (
            f" (expire {raw['expires']})" if raw.get("expires") else "") if source else "none found",
                  "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile (AWS_PROFILE / --profile), "
                  "or run `aws sso login`"))
    if not all(c.ok for c in checks):
        return False
    add(round_trip(config, round_trip_timeout))
    if config.vision.enabled:
        add(vision_access(config, round_trip_timeout))
    return all(c.ok for c in checks)


def vision_access(config: BridgeConfig, timeout: float) -> Check:
    """One Converse request to the vision model from the worker's interpreter, credentials and endpoint."""
    import json
    import subprocess

    from sonic_bridge.vision.converse import ACCESS_FIX

    python = config.python
    name = f"vision model {config.vision.model_id}"
    try:
        done = subprocess.run([python, "-P", "-m", "sonic_bridge.vision.probe"], input=config.dumps(),
                              capture_output=True, text=True, timeout=timeout + 30, check=False,
                              env=launch.worker_environment(python, config.worker_env))
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return Check(name, False, f"the probe on {python} failed: {exc}",
                     "run `sonic-bridge worker-env` again (the worker needs Pillow for the camera)")
    if result.get("ok"):
        return Check(name, True, f"answered in {result['seconds']:.2f} s: {str(result['answer'])[:80]!r}")
    kind = result.get("kind", "")
    fix = ACCESS_FIX if kind == "AccessDeniedException" else (
        "check vision.model_id and region (Nova 2 Lite is reached through a cross-Region id: us., eu. or global.)"
        if kind in ("ValidationException", "ResourceNotFoundException") else
        "install the worker's vision dependency: `sonic-bridge worker-env` (Pillow)" if kind in (
            "ImportError", "ModuleNotFoundError") else "see the message")
    return Check(name, False, f"{kind}: {result.get('problem', '')}", fix)


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
