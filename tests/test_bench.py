"""`sonic-bridge bench --quick` runs every suite and writes its outputs (figures are not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("faster_fifo")
pytest.importorskip("matplotlib")
pytest.importorskip("aws_sdk_bedrock_runtime")


@pytest.mark.slow
def test_the_quick_bench_writes_results_plots_and_a_summary(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sonic_bridge.cli", "bench", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**__import__("os").environ, "AWS_ACCESS_KEY_ID": "AKIDFAKE",
                               "AWS_SECRET_ACCESS_KEY": "secret"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert {t["transport"] for t in results["transports"]} == {"ring", "faster_fifo", "mp_queue", "unix_seqpacket"}
    assert {t["size"] for t in results["transports"]} == {640, 3840}
    assert len(results["crash"]) == 4 and all("verdict" in c for c in results["crash"])
    assert {(o["integration"], o["busy_host"]) for o in results["overhead"]} == {
        ("in_process", False), ("in_process", True), ("sonic_bridge", False), ("sonic_bridge", True)}
    assert [w["door"] for w in results["worker_cost"]] == ["sdk_in_process", "sdk_tls_server"]
    assert [s["bridges"] for s in results["scale"]] == [1, 2]
    assert {(u["door"], u["start"]) for u in results["startup"]} == {
        (door, start) for door in ("sdk_in_process", "sdk_tls_server") for start in ("cold", "pre-started", "shared")}
    assert all(u["start_to_ready"]["n"] == 1 for u in results["startup"])
    for png in ("transports.png", "scale.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "summary.md").read_text()
    assert [p["size"] for p in results["vision"]["push_video"]] == ["640x480", "1280x720"]
    assert all(p["paced_all_us"]["p99"] > 0 for p in results["vision"]["push_video"])
    assert [e["sent_as"] for e in results["vision"]["encode"]] == ["640x480", "640x360", "640x360"]
    paths = [h["path"] for h in results["host_paths"]]
    assert paths in (["compiled", "python"], ["python"])  # the compiled path whenever it is built
    assert all(h["cold_push_us"]["n"] == 100 and h["cold_push_us"]["p50"] > 0 for h in results["host_paths"])
    assert {(x["integration"], x["sessions"]) for x in results["scale_sdk"]} == {
        (i, 2) for i in ("in_process_sdk", "bridges_sdk", "bridges_sdk_shared_8")}
    assert all(x["dropped_frames"] == 0 and x["cpu_percent_total"] > 0 for x in results["scale_sdk"])
    processes = {x["integration"]: x["worker_processes"] for x in results["scale_sdk"]}
    assert processes["bridges_sdk"] == 2 and processes["bridges_sdk_shared_8"] == 1  # two sessions share one
    assert "(shared workers, 8 sessions each)" in summary
    engines = {e["engine"]: e for e in results["engines"]}
    assert set(engines) == {"sonic", "cascade"} and all(e["turns"] == 1 and e["dropped_frames"] == 0
                                                         for e in engines.values())
    for e in engines.values():  # each step of the turn after the one before it
        assert 0 < e["final_transcript_ms"]["p50"] <= e["first_text_ms"]["p50"] <= e["first_audio_ms"]["p50"]
    for heading in ("## Transports", "## Bridge overhead", "## Start-up", "## Worker cost", "## Scale",
                    "## Scale through the SDK", "## Vision", "## Engines", "## Against the goals"):
        assert heading in summary
    assert "Machine:" in summary and "sonic-bridge bench --quick" in summary
