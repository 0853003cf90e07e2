"""Build hook: compiles the host's hot path (src/sonic_bridge/ipc/_hotpath.c) into a limited-API (abi3)
extension with the machine's C compiler, so one wheel serves the Python 3.11 host and the 3.12 worker.

hatchling builds no C itself and the extension is one file with no dependencies, so a setuptools or meson
build would add more than it saves. Without a compiler the wheel stays pure Python: the same records are then
written by the Python path (sonic_bridge.ipc.ring), which the tests check byte for byte against this one.
SONIC_BRIDGE_NO_COMPILE=1 skips the compilation.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/sonic_bridge/ipc/_hotpath.c")
TARGET = "sonic_bridge/ipc/_hotpath.abi3.so"
ABI_TAG = "cp311-abi3"  # Py_LIMITED_API 0x030B0000 in the source


def compile_extension(source: Path, output: Path) -> str | None:
    """Compile ``source`` into ``output``; None on success, else what went wrong (one line)."""
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if not shutil.which(compiler[0]):
        return f"no C compiler ({compiler[0]})"
    include = sysconfig.get_paths()["include"]
    command = [*compiler, "-O2", "-fPIC", "-shared", "-Wall", "-I", include, str(source), "-o", str(output)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{compiler[0]} failed: {exc}"
    if done.returncode != 0:
        return f"{compiler[0]} failed: {' '.join((done.stderr or done.stdout).split())[:300]}"
    return None


class HotPathBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("SONIC_BRIDGE_NO_COMPILE"):
            return
        root = Path(self.root)
        source = root / SOURCE
        if version == "editable":  # the package runs from src/: the extension goes beside its source
            output = root / "src" / TARGET
            problem = compile_extension(source, output)
        else:
            self._folder = tempfile.mkdtemp(prefix="sonic-bridge-build-")
            output = Path(self._folder) / "_hotpath.abi3.so"
            problem = compile_extension(source, output)
            if problem is None:
                build_data["force_include"][str(output)] = TARGET
        if problem is not None:
            self.app.display_warning(f"sonic-bridge: the compiled hot path was not built ({problem}); the wheel "
                                     "uses the pure-Python path")
            return
        build_data["pure_python"] = False
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        build_data["tag"] = f"{ABI_TAG}-{platform}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        folder = getattr(self, "_folder", None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
