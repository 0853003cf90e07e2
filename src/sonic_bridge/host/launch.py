"""How the host launches a worker: which interpreter, which command line, which environment.

The worker gets its interpreter's own packages and nothing of the host's: a 3.12 worker that saw a
3.11 host's site-packages would import the wrong numpy and die. It gets the host's sonic-bridge only
when that is a source checkout (a ``src/`` folder holding just the package, as in development), or when
it runs on the host's own interpreter. Of the host's environment it keeps what a worker needs: the
locale, the home and temp folders, proxies and CA settings, the AWS variables (credentials, profiles,
endpoints), OpenBLAS' CPU overrides, sonic-bridge's own variables, and whatever ``worker_env`` adds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import sonic_bridge
from sonic_bridge._version import __version__

WORKER_ENV_VARIABLE = "SONIC_BRIDGE_WORKER_ENV"  # overrides where the default worker environment lives
_KEEP_NAMES = {
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
}
_KEEP_PREFIXES = ("AWS_", "LC_", "OPENBLAS_", "SONIC_BRIDGE_")
# Never handed to a worker of another interpreter: they would point it at the host's packages.
_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "VIRTUAL_ENV", "CONDA_PREFIX")


def package_parent() -> str:
    """The folder the host imported sonic_bridge from (a ``src/`` checkout, or a site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(sonic_bridge.__file__)))


def is_source_checkout(folder: str) -> bool:
    """A development layout: the folder holds sonic_bridge and nothing else importable of the host's."""
    if os.path.basename(folder) in ("site-packages", "dist-packages"):
        return False
    try:
        entries = os.listdir(folder)
    except OSError:
        return False
    others = [
        e for e in entries
        if e != "sonic_bridge" and not e.endswith((".egg-info", ".dist-info")) and not e.startswith((".", "__"))
        and (e.endswith(".py") or os.path.isdir(os.path.join(folder, e)))
    ]
    return "sonic_bridge" in entries and not others


def _environment_of(python: str) -> str:
    """A virtual environment's folder, or the resolved interpreter: two venvs of one base Python differ."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(python)))
    if os.path.isfile(os.path.join(folder, "pyvenv.cfg")):
        return os.path.realpath(folder)
    return os.path.realpath(python)


def same_interpreter(python: str) -> bool:
    """Whether ``python`` runs in the host's own environment (same venv, or the same bare interpreter)."""
    return _environment_of(python) == _environment_of(sys.executable)


def default_worker_env_dir() -> str:
    """Where ``sonic-bridge worker-env`` puts the worker environment of this version by default."""
    override = os.environ.get(WORKER_ENV_VARIABLE)
    if override:
        return os.path.abspath(os.path.expanduser(override))
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "sonic-bridge", f"worker-{__version__}")


def venv_python(env_dir: str) -> str:
    return os.path.join(env_dir, "bin", "python")


def worker_python(configured: str | None) -> str:
    """The worker's interpreter: the configured one; else the host's own when it is >= 3.12; else the
    default worker environment when it exists; else the host's own (enough for the direct fake)."""
    if configured:
        return configured
    if sys.version_info >= (3, 12):
        return sys.executable
    candidate = venv_python(default_worker_env_dir())
    if os.access(candidate, os.X_OK):
        return candidate
    return sys.executable


def worker_environment(python: str, extra: Mapping[str, str] | None = None,
                       host: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a worker on ``python`` starts with (see the module docstring)."""
    source = os.environ if host is None else host
    if same_interpreter(python):
        env = dict(source)  # the host's own environment is the worker's: nothing foreign can leak
    else:
        env = {k: v for k, v in source.items() if k in _KEEP_NAMES or k.startswith(_KEEP_PREFIXES)}
        for name in _PYTHON_VARIABLES:
            env.pop(name, None)
    parent = package_parent()
    if same_interpreter(python) or is_source_checkout(parent):
        # The host's own sonic-bridge, so host and worker always run the same code.
        env["PYTHONPATH"] = parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def worker_argv(python: str, fds: Mapping[str, int], *, pooled: bool = False, group: bool = False) -> list[str]:
    """``-P``: the host's working folder must not shadow the worker's packages."""
    argv = [python, "-P", "-m", "sonic_bridge.worker"] + (["--pooled"] if pooled else []) + (
        ["--group"] if group else [])
    for name, fd in fds.items():
        argv += [f"--{name}", str(fd)]
    return argv
