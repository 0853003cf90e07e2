"""sonic-bridge as a user installs it: the built wheel, non-editable, in fresh venvs.

A Python 3.11 host venv with no AWS package (OpenAvatarChat's), and the worker environment that the
host's own ``sonic-bridge worker-env`` makes from the same wheel on Python 3.12. Nothing of the
checkout is on any path: the venvs are new for every run (pip's download cache only saves downloads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sonic_bridge import __version__
from tests.fake_server import fake_server

ROOT = Path(__file__).resolve().parent.parent
HOST = os.environ.get("SONIC_BRIDGE_HOST_PYTHON")
pytestmark = [pytest.mark.slow, pytest.mark.sdk,
              pytest.mark.skipif(not HOST, reason="no Python 3.11 host environment (run through scripts/test)")]
# The handler's test needs these (OpenAvatarChat itself has pydantic, loguru and pyyaml).
HOST_TEST_PACKAGES = ["pytest>=8", "pytest-timeout", "pydantic>=2", "psutil", "loguru", "pyyaml"]


@dataclass
class Layout:
    wheel: Path
    host: Path  # the 3.11 venv's interpreter
    worker_env: Path  # the folder worker-env made
    env: dict[str, str]  # a user's shell: where bridges find the worker environment, fake credentials


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    assert HOST
    top = tmp_path_factory.mktemp("user-layout")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w",
         str(top / "dist"), str(ROOT)])
    (wheel,) = (top / "dist").glob("sonic_bridge-*.whl")
    base = run([HOST, "-c", "import sys; print(sys._base_executable)"]).stdout.strip()
    run([base, "-m", "venv", str(top / "host")])
    host = top / "host" / "bin" / "python"
    run([str(host), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel), *HOST_TEST_PACKAGES])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SONIC_BRIDGE_"))}
    env.update(SONIC_BRIDGE_WORKER_ENV=str(top / "worker"), AWS_ACCESS_KEY_ID="AKIDFAKE",
               AWS_SECRET_ACCESS_KEY="secret", AWS_EC2_METADATA_DISABLED="true")
    # The README's step: the host's own command makes the worker environment, where bridges look for it.
    made = run([str(top / "host" / "bin" / "sonic-bridge"), "worker-env", "--from", str(wheel), "--extras",
                "aws,fake"], env=env, cwd=top)
    assert made.stdout.strip().splitlines()[-1] == str(top / "worker" / "bin" / "python")
    return Layout(wheel, host, top / "worker", env)


def test_the_host_venv_is_311_with_the_installed_package_and_no_aws_package(layout: Layout) -> None:
    out = run([str(layout.host), "-c", "import sys, importlib.util as u, sonic_bridge; print(sys.version_info[:2], "
               "sonic_bridge.__version__, sonic_bridge.__file__, [m for m in ('boto3', 'botocore', 'awscrt', "
               "'aws_sdk_bedrock_runtime') if u.find_spec(m)])"], env=layout.env, cwd=layout.wheel.parent).stdout
    assert out.startswith(f"(3, 11) {__version__} {layout.host.parent.parent}/lib/python3.11/site-packages/")
    assert out.strip().endswith("[]")


def test_the_wheel_ships_the_compiled_hot_path_for_both_interpreters(layout: Layout) -> None:
    # Built from source with the machine's compiler (hatch_build.py), one abi3 extension for 3.11 and 3.12.
    assert "-abi3-" in layout.wheel.name, layout.wheel.name
    code = "import sys, sonic_bridge.ipc.ring as r; print(sys.version_info[:2], r._hotpath.__file__)"
    for python in (layout.host, layout.worker_env / "bin" / "python"):
        out = run([str(python), "-c", code], env=layout.env, cwd=layout.wheel.parent).stdout
        assert "site-packages/sonic_bridge/ipc/_hotpath.abi3.so" in out, out


def test_a_conversation_through_the_sdk_in_the_worker_env_found_by_default(layout: Layout) -> None:
    out = run([str(layout.host), str(ROOT / "tests" / "installed_host.py"), "via-sdk"], env=layout.env,
              cwd=layout.wheel.parent, timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["host"] == [3, 11] and "site-packages" in result["sonic_bridge"]
    assert result["aws_modules_in_host"] == [] and result["errors"] == []
    assert result["worker_python"].startswith("3.12") and result["worker_version"] == __version__
    assert "turn 1: 1.0 seconds of speech" in result["texts"] and 0.9 < result["reply_seconds"] < 1.1
    assert result["frames_in"] == result["worker_frames_sent"] + result["worker_frames_dropped"] > 0


def test_the_aws_backend_against_the_tls_fake_server_in_a_shared_worker(layout: Layout, tmp_path: Path) -> None:
    worker = str(layout.worker_env / "bin" / "python")
    with fake_server(tmp_path, python=worker) as server:
        out = run([str(layout.host), str(ROOT / "tests" / "installed_host.py"), "aws", server.url, server.ca,
                   "group"], env=layout.env, cwd=layout.wheel.parent, timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == [] and result["aws_modules_in_host"] == []
    assert result["shared_worker_outlived_session"]
    assert result["worker_python"].startswith("3.12")
    assert "turn 1: 1.0 seconds of speech" in result["texts"] and 0.9 < result["reply_seconds"] < 1.1
    assert result["frames_in"] == result["worker_frames_sent"] + result["worker_frames_dropped"] > 0


def test_doctor_in_the_installed_layout_is_all_good(layout: Layout) -> None:
    out = run([str(layout.host.parent / "sonic-bridge"), "doctor", "--via-sdk"], env=layout.env,
              cwd=layout.wheel.parent, timeout=120).stdout
    assert f"the worker environment at {layout.worker_env}" in out and out.strip().endswith("all good"), out


def test_the_handlers_session_tests_pass_in_the_installed_layout(layout: Layout) -> None:
    # The engine's interpreter imports the handler from the example folder and sonic_bridge from its venv.
    # The classic engine generation's runs repeat the stream one's through the same handler code: left to
    # the main run (20 s of CI).
    proc = subprocess.run([str(layout.host), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/test_openavatarchat_handler.py", "-k", "not classic"], capture_output=True, text=True,
                          env={**layout.env, "SONIC_BRIDGE_EXPECT_INSTALLED": "1"}, cwd=ROOT, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout
