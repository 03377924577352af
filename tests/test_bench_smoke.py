"""bench/gpu.sh runs end to end on the CPU (the GPU box runs the same script at full size)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_runs_on_cpu(tmp_path):
    out = tmp_path / "cpu.md"
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--device", "cpu", "--quick", "--cold"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text()
    stages = ("encoder alone", "decode alone, 3 MP", "end to end", "FAISS", "dedup pairs")
    for stage in (*stages, "cold page cache", "stages of the build", "waited for decode"):
        assert stage in table
    assert "FAILED" not in table
