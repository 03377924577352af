"""Temp files of atomic writes always have an owner: a dead writer's temp is removed by the
next write of the same file, `index verify` lists them and `--repair` removes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PHOTOS, TINY_BIRDER, index_cli

from indexer.atomic import atomic_path, find_temps, write_atomic


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def plant(folder: Path, name: str, size: int = 1000) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


def test_next_write_removes_dead_writers_temps_and_keeps_live_ones(tmp_path, live_pid):
    dead = dead_pid()
    gone = [
        plant(tmp_path, f".r3.html.tmp-{dead}-0123abcd"),
        plant(tmp_path, f".r3.html.tmp{dead}"),  # the name FAISS saves used before
        plant(tmp_path, ".r3.html.k2j4h5g6.tmp"),  # mkstemp's: no pid, so by age
    ]
    old = time.time() - 2 * 86400
    os.utime(gone[2], (old, old))
    kept = [
        plant(tmp_path, f".r3.html.tmp-{live_pid}-89abcdef"),  # a writer still at work
        plant(tmp_path, ".r3.html.a1b2c3d4.tmp"),  # unknown writer, written just now
        plant(tmp_path, f".other.html.tmp-{dead}-0123abcd"),  # another file's: not this write's
    ]
    write_atomic(tmp_path / "r3.html", "<html></html>")
    assert (tmp_path / "r3.html").read_text() == "<html></html>"
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in kept)


def test_a_failed_write_leaves_nothing_and_the_old_file(tmp_path):
    target = tmp_path / "vectors.faiss"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target, durable=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss"]


WRITER = """
import sys, time
from indexer.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 100_000)
    print("writing", flush=True)
    time.sleep(120)
"""


def test_kill_9_mid_save_then_build_removes_the_temp(tmp_path):
    photos, index = tmp_path / "photos", tmp_path / "index"
    photos.mkdir()
    for name in ("cat.jpg", "bee.jpg"):
        (photos / name).write_bytes((PHOTOS / "flat" / name).read_bytes())
    common = ["--index", str(index), "--weights", str(TINY_BIRDER), "--workers", "1", "-q"]
    assert index_cli("build", str(photos), *common).returncode == 0
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(index / "vectors.faiss")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert writer.stdout.readline() == "writing\n"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    left = find_temps(index)
    assert [(t.target, t.pid, t.size, t.stale) for t in left] == [
        ("vectors.faiss", writer.pid, 100_000, True)
    ]
    (photos / "cake.jpg").write_bytes((PHOTOS / "flat" / "cake.jpg").read_bytes())
    assert index_cli("build", str(photos), *common).returncode == 0  # saves vectors.faiss again
    assert find_temps(index) == []
    assert (
        "ok: catalog, FAISS index and files agree"
        in index_cli("verify", "--index", str(index)).stdout
    )


def test_verify_lists_leftover_temps_and_repair_removes_dead_ones(tmp_path, live_pid):
    photos, index = tmp_path / "photos", tmp_path / "index"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes((PHOTOS / "flat" / "cat.jpg").read_bytes())
    common = ["--index", str(index)]
    built = index_cli(
        "build", str(photos), *common, "--weights", str(TINY_BIRDER), "--workers", "1"
    )
    assert built.returncode == 0, built.stderr
    dead = dead_pid()
    faiss_temp = plant(index, f".vectors.faiss.tmp-{dead}-0123abcd", 3_000_000)
    thumb_temp = plant(index, f"thumbs/256/ab/.abcdef.jpg.tmp-{dead}-0123abcd", 2048)
    live = plant(index, f".vectors.faiss.tmp-{live_pid}-89abcdef", 10)

    report = index_cli("verify", *common)
    assert report.returncode == 1
    problem = "problem: 2 temp files left by interrupted writes; --repair removes them"
    assert problem in report.stdout
    assert f".vectors.faiss.tmp-{dead}-0123abcd (2.9 MB, writer pid {dead})" in report.stdout
    assert f"thumbs/256/ab/.abcdef.jpg.tmp-{dead}-0123abcd (2.0 KB" in report.stdout
    assert "note: 1 temp files are recent or belong to running writers" in report.stdout

    repaired = index_cli("verify", "--repair", *common)
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired: removed 2 leftover temp files (2.9 MB)" in repaired.stdout
    assert "FAISS index rebuilt" not in repaired.stdout  # temps alone cost no rebuild
    assert not faiss_temp.exists() and not thumb_temp.exists() and live.exists()
    again = index_cli("verify", *common)
    assert again.returncode == 0 and "ok: catalog, FAISS index and files agree" in again.stdout


SAVER = """
import sys
import numpy as np
from indexer.store.vectors import IndexSpec, VectorIndex
index = VectorIndex.create(IndexSpec(), 256)
index.build(np.arange(60_000), np.random.default_rng(0).random((60_000, 256), np.float32))
while True:  # save over and over: a kill lands inside a save
    index.save(sys.argv[1], {"generation": 1})
"""


def test_kill_9_inside_a_real_faiss_save(tmp_path):
    from indexer.store import vectors

    target = tmp_path / "vectors.faiss"
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(target)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    deadline = time.monotonic() + 120
    try:
        while not (target.exists() and [t for t in find_temps(tmp_path) if t.size]):
            assert time.monotonic() < deadline and saver.poll() is None
            time.sleep(0.001)
    finally:
        saver.kill()
        saver.wait()
    left = find_temps(tmp_path)
    assert left and all(t.pid == saver.pid and t.stale for t in left)
    loaded, _ = vectors.load(target)  # the last complete save is intact
    assert loaded.ntotal == 60_000
    loaded.save(target, {"generation": 2})  # the next save removes the dead saver's temps
    assert find_temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss", "vectors.json"]
