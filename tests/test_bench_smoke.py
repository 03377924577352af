"""bench/gpu.sh runs end to end on the CPU (the GPU box runs the same script at full size)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    rows = dict(line.strip("| ").split(" | ", 1) for line in table.splitlines()[4:])
    agree = rows["agreement: torch (cpu) vs CPU contract, 26 pictures"]
    assert agree.startswith(("max px diff 1,", "max px diff 2,")), agree
    skipped = [k for k, v in rows.items() if v.startswith("skipped: ")]  # no CUDA, no wheels
    gpu_parts = ("agreement: nvImageCodec", "GPU decode + resize/crop alone, 3 MP", "SDPA")
    for part in (*gpu_parts, "GPU-decode pipeline, 12 MP", "encoder MFU", "FAISS on the GPU"):
        assert any(k.startswith(part) for k in skipped), part


def test_one_read_bench_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "one_read.py"), "--n", "8", "--batch", "4"]
        + ["--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT / "bench",
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "one read / hashed ahead" in proc.stdout
    builds = [line for line in proc.stdout.splitlines() if "stages" in line]
    assert len(builds) == 4  # two per folder, in both orders


def test_library_bench_compares_two_checkouts(tmp_path):
    """bench/library.py against this same checkout as the baseline: every step, a ratio."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "library.py"), "--n", "40", "--runs", "1"]
        + ["--baseline", str(ROOT), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for step in ("no-op build", "search", "verify"):
        line = next(x for x in proc.stdout.splitlines() if x.strip().startswith(step))
        assert "baseline" in line and "ratio" in line


def test_dedup_ui_bench_runs(tmp_path):
    """bench/dedup_ui.py at 50 groups: every column measured (page, tier filter, HTML)."""
    out = tmp_path / "dedup_ui.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dedup_ui.py"), "--sizes", "50", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in out.read_text().splitlines() if line.startswith("| 50 |"))
    cells = [c.strip().replace(",", "") for c in row.strip("|").split("|")]
    assert len(cells) == 8 and cells[1] == "122"  # 45 exact groups of 2–3 files, 5 pairs
    assert all(float(c) > 0 for c in cells)


def test_milvus_bench_runs(tmp_path, milvus_server):
    """bench/milvus_backend.py end to end on a small catalog, on Milvus Lite and on the test
    session's Milvus server: every figure is printed, both name the local neighbours."""
    pytest.importorskip("milvus_lite", reason="needs milvus-lite: pip install '.[milvus]'")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "milvus_backend.py"), "--n", "1000", "--queries"]
        + ["10", "--dir", str(tmp_path), "--backends", "lite,server", "--uri", milvus_server.uri],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT / "bench",
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}",
            "MILVUS_TOKEN": milvus_server.token,
        },
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for figure in ("export rate (vectors/s)", "re-export, nothing changed", "bare search p50"):
        assert figure in proc.stdout
    overlaps = [x for x in proc.stdout.splitlines() if x.startswith("top-10 overlap")]
    assert len(overlaps) == 4 and all(float(x.split()[-1]) >= 0.9 for x in overlaps)


def test_text_encoder_bench_runs(tmp_path):
    """bench/text_encoder.py at a tiny size: both models agree, every figure is printed."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "text_encoder.py"), "--layers", "1"]
        + ["--width", "64", "--batch", "1,4", "--iters", "1", "--n", "3000", "--queries", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    rows = [line.split() for line in lines if line.startswith(("fp32 ", "bf16 "))]
    assert [r[:2] for r in rows] == [["fp32", "1"], ["bf16", "1"], ["fp32", "4"], ["bf16", "4"]]
    assert all(float(r[3]) > 0 for r in rows)  # ours prompts/s
    try:
        import transformers  # noqa: F401 - the reference is in the [bench] extra
    except ImportError:
        return
    for dtype, *_, diff in rows:  # max |ours - HF| of the normalized projections
        assert float(diff) < (1e-5 if dtype == "fp32" else 2e-2)
    assert sum("query latency" in line and "median" in line for line in lines) == 2
