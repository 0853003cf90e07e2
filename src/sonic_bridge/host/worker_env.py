"""``sonic-bridge worker-env``: make the Python >= 3.12 environment a 3.11 host's workers run in.

It creates a venv with this very sonic-bridge version and its ``aws`` extra (from the registry, or
from a wheel or source folder given with ``--from``), checks it exactly as a bridge will launch it,
and returns its interpreter. Made at the default place, bridges find it without ``worker_python``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from sonic_bridge._version import __version__
from sonic_bridge.host import launch
from sonic_bridge.ipc import handshake

MIN_WORKER = (3, 12)


class WorkerEnvError(Exception):
    """The environment could not be made or does not work; the message names the fix."""


@dataclass(frozen=True)
class ProbeResult:
    facts: dict[str, object]

    @property
    def version(self) -> tuple[int, ...]:
        raw = self.facts.get("python")
        return tuple(int(v) for v in raw) if isinstance(raw, list) else (0,)

    def hello(self) -> handshake.Hello:
        """The introduction this worker would make, as the bridge's handshake checks it."""
        raw = self.facts
        return handshake.Hello(str(raw.get("sonic_bridge")), int(str(raw.get("ring_protocol", 0))),
                               ".".join(map(str, self.version)), str(raw.get("executable")), 0)

    def version_problem(self, python: str) -> str | None:
        return handshake.mismatch(self.hello(), __version__, python)


def python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def _pyenv_root() -> str | None:
    if shutil.which("pyenv"):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30, check=False)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
    home = os.path.join(os.path.expanduser("~"), ".pyenv")
    return home if os.path.isdir(home) else None


def find_worker_python() -> str | None:
    """A Python >= 3.12: this one, then PATH (python3.12, 3.13, 3.14, python3), then pyenv's versions folder."""
    if sys.version_info >= MIN_WORKER:
        return sys.executable
    for name in ("python3.12", "python3.13", "python3.14", "python3"):
        found = shutil.which(name)
        if found and (python_version(found) or (0, 0)) >= MIN_WORKER:
            return found
    root = _pyenv_root()
    if root:
        versions = os.path.join(root, "versions")
        candidates = []
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            for entry in os.listdir(versions):
                parts = entry.split(".")
                if len(parts) >= 2 and parts[0] == "3" and parts[1].isdigit() and int(parts[1]) >= MIN_WORKER[1]:
                    candidates.append(((int(parts[1]), entry), os.path.join(versions, entry, "bin", "python3")))
        for _, path in sorted(candidates):  # the lowest fitting minor version: 3.12 is what the SDK was tested on
            if os.access(path, os.X_OK) and (python_version(path) or (0, 0)) >= MIN_WORKER:
                return path
    return None


def default_source() -> str:
    """What to install: the host's own source checkout in development, else this version from the registry."""
    parent = launch.package_parent()
    root = os.path.dirname(parent)
    if launch.is_source_checkout(parent) and os.path.isfile(os.path.join(root, "pyproject.toml")):
        return root
    return f"sonic-bridge=={__version__}"


def requirement(source: str, extras: str) -> str:
    """``pip install`` argument for a wheel, a source folder, or a registry requirement, with extras."""
    if source.endswith(".whl") or os.path.isdir(source):
        return f"{os.path.abspath(source)}[{extras}]"
    name, sep, pin = source.partition("==")
    return f"{name}[{extras}]{sep}{pin}"


# Where each package would come from, found without importing anything (a leaked numpy can't crash it).
_LOCATE = (
    "import importlib.util, json, sys\n"
    "out = {}\n"
    "for name in ('sonic_bridge', 'numpy', 'aws_sdk_bedrock_runtime'):\n"
    "    try:\n"
    "        spec = importlib.util.find_spec(name)\n"
    "    except Exception:\n"
    "        spec = None\n"
    "    out[name] = spec.origin if spec and spec.origin else ''\n"
    "print(json.dumps({'modules': out, 'prefix': sys.prefix, 'executable': sys.executable}))\n"
)


def _run_json(argv: list[str], python: str, extra: dict[str, str] | None, timeout: float) -> dict[str, object]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                             env=launch.worker_environment(python, extra))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkerEnvError(f"{python} could not be run: {exc}") from None
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit code {out.returncode}"
        raise WorkerEnvError(f"{python} cannot run the sonic-bridge worker: {last}")
    try:
        facts = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        facts = None
    if not isinstance(facts, dict):
        raise WorkerEnvError(f"{python} printed no worker facts: {out.stdout[-300:]!r}")
    return facts


@dataclass(frozen=True)
class Origins:
    """Where the worker's interpreter would import each package from, and its own prefix."""

    modules: dict[str, str]
    prefix: str


def locate(python: str, extra: dict[str, str] | None = None, timeout: float = 60.0) -> Origins:
    """Where the worker's interpreter, launched as a bridge launches it, would import each package from."""
    facts = _run_json([python, "-P", "-c", _LOCATE], python, extra, timeout)
    modules = facts.get("modules")
    found = {str(k): str(v) for k, v in modules.items()} if isinstance(modules, dict) else {}
    return Origins(found, str(facts.get("prefix", "")))


def probe(python: str, profile: str | None = None, extra: dict[str, str] | None = None,
          timeout: float = 90.0) -> ProbeResult:
    """The worker's view of its environment, launched exactly as a bridge launches it."""
    argv = [python, "-P", "-m", "sonic_bridge.worker", "--probe", "--profile", profile or ""]
    return ProbeResult(_run_json(argv, python, extra, timeout))


def problems(result: ProbeResult, python: str, needs_sdk: bool = True) -> list[str]:
    """What would stop a bridge from using this worker environment (empty when it is fine)."""
    facts = result.facts
    found: list[str] = []
    mismatch = result.version_problem(python)
    if mismatch:
        found.append(mismatch)
    if needs_sdk and result.version < MIN_WORKER:
        found.append(f"{python} is Python {'.'.join(map(str, result.version))}: the AWS SDK needs >= 3.12")
    if needs_sdk and "sdk" not in facts:
        found.append(f"{python} cannot import the AWS SDK ({facts.get('sdk_error')}): install sonic-bridge[aws]")
    return found


def leaks(origins: Origins, python: str) -> list[str]:
    """Packages the worker would import from the host's environment (a 3.11 numpy in a 3.12 worker)."""
    if os.path.realpath(origins.prefix) == os.path.realpath(sys.prefix):
        return []  # the host's own environment (its interpreter, or a shim or wrapper of it)
    host_dirs = {os.path.realpath(p) for p in _host_site_dirs()}
    out = []
    for name, path in origins.modules.items():
        real = os.path.realpath(path) if path else ""
        if real and any(real.startswith(d + os.sep) for d in host_dirs):
            out.append(f"the worker at {python} would import {name} from the host's environment ({path}): "
                       "remove the host's folders from its PYTHONPATH (worker_env)")
    return out


def _host_site_dirs() -> list[str]:
    import site

    dirs = list(site.getsitepackages())
    user = site.getusersitepackages()
    return [*dirs, user] if isinstance(user, str) else dirs


def create(env_dir: str | None = None, python: str | None = None, source: str | None = None,
           extras: str = "aws", progress: Callable[[str], None] = lambda _: None) -> str:
    """Make (or update) the worker environment; returns its interpreter. Raises WorkerEnvError."""
    base = python or find_worker_python()
    if base is None:
        raise WorkerEnvError(
            "no Python >= 3.12 found (this interpreter, PATH, pyenv's versions folder): install one, e.g. "
            "`pyenv install 3.12` or your distribution's python3.12, or name it with --python"
        )
    version = python_version(base)
    if version is None or version < MIN_WORKER:
        raise WorkerEnvError(f"--python {base} is not a Python >= 3.12 (found {version or 'nothing that runs'})")
    target = os.path.abspath(env_dir or launch.default_worker_env_dir())
    interpreter = launch.venv_python(target)
    if not os.access(interpreter, os.X_OK):
        progress(f"creating {target} with {base}")
        _run([base, "-m", "venv", target], "creating the venv")
    spec = requirement(source or default_source(), extras)
    progress(f"installing {spec}")
    _run([interpreter, "-m", "pip", "install", "-q", "--disable-pip-version-check", spec], f"pip install {spec}")
    progress("checking it as a bridge will launch it")
    found = leaks(locate(interpreter), interpreter)
    found += problems(probe(interpreter), interpreter, needs_sdk="aws" in extras.split(","))
    if found:
        raise WorkerEnvError("; ".join(found))
    return interpreter


def _run(argv: list[str], what: str) -> None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkerEnvError(f"{what} failed: {exc}") from None
    if out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-8:])
        raise WorkerEnvError(f"{what} failed (exit code {out.returncode}):\n{tail}")
