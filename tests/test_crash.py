"""A build killed with SIGKILL at any moment is finished by the next one, nothing twice."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_BIRDER, check_consistent, make_distinct_jpegs

from indexer.store.catalog import Catalog
from indexer.store.locking import WriterLock


def run_build(index: Path, root: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "indexer.cli", "build", str(root), "--index", str(index)]
    cmd += ["--weights", str(TINY_BIRDER), "--workers", "1", "--batch-size", "8", "--quiet"]
    return subprocess.Popen(
        [*cmd, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def committed_contents(index: Path) -> int:
    if not (index / "catalog.sqlite").exists():
        return 0
    try:
        return Catalog(index, readonly=True).counts()["vectors"]
    except Exception:
        return 0


def embedded_contents(index: Path) -> dict[str, tuple[bytes, float]]:
    """Every committed embedding: content hash -> (vector bytes, when it was embedded)."""
    with sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT hash, vector, embedded_at FROM contents WHERE vector IS NOT NULL")
        return {h: (bytes(v), at) for h, v, at in rows}


def kill_after_a_commit(index: Path, root: Path) -> bool:
    """Run a build and SIGKILL it right after it commits a batch; False if it finished first."""
    before = committed_contents(index)
    proc = run_build(index, root)
    while proc.poll() is None and committed_contents(index) == before:
        time.sleep(0.02)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun(tmp_path):
    root = tmp_path / "pics"
    make_distinct_jpegs(root, 120)
    index = tmp_path / "index"
    rng = random.Random(7)
    kills = 0
    for _ in range(3):
        before = committed_contents(index)
        proc = run_build(index, root)
        time.sleep(rng.uniform(0.5, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert committed_contents(index) >= before
    kills += kill_after_a_commit(index, root)  # leaves at least one committed batch
    committed = embedded_contents(index)
    assert kills >= 1 and committed
    proc = run_build(index, root, "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    # every committed embedding survived unchanged (not lost, not redone) and only the rest ran
    after = embedded_contents(index)
    assert {h: after.get(h) for h in committed} == committed
    assert summary["embedded"] == 120 - len(committed) and summary["vectors"] == len(after) == 120
    check_consistent(index, 120)
    with sqlite3.connect(index / "catalog.sqlite") as db:  # no run left "running" forever
        statuses = [row[0] for row in db.execute("SELECT status FROM runs ORDER BY id")]
    # builds killed after recording their run are marked "killed" by the next one (kills
    # during start-up leave no row; a build may also finish before its kill)
    assert statuses[-1] == "done" and "running" not in statuses
    again = run_build(index, root, "--json")
    out, _ = again.communicate(timeout=120)
    assert json.loads(out)["embedded"] == 0


def run_statuses(index: Path) -> list[str]:
    """The status of every recorded build run, oldest first ([] while there is no catalog)."""
    try:
        with sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True) as db:
            return [row[0] for row in db.execute("SELECT status FROM runs ORDER BY id")]
    except sqlite3.Error:
        return []


def test_a_killed_build_does_not_stay_running(tmp_path):
    """SIGKILL once the build has recorded its run: the next build marks that run killed."""
    root, index = tmp_path / "pics", tmp_path / "index"
    make_distinct_jpegs(root, 80)
    proc = run_build(index, root)
    deadline = time.monotonic() + 120
    while run_statuses(index) != ["running"] and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_statuses(index) == ["running"]  # what a killed writer leaves behind
    assert run_build(index, root).wait(timeout=300) == 0
    assert run_statuses(index) == ["killed", "done"]


def test_second_writer_is_refused(tmp_path):
    root = tmp_path / "pics"
    make_distinct_jpegs(root, 3)
    index = tmp_path / "index"
    with WriterLock(index):
        proc = run_build(index, root)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "another `index build` or `index watch` is writing to this index" in err
    assert f"pid {os.getpid()}" in err
    assert err.count("\n") == 1  # one clear line, no traceback


def test_readers_work_while_a_build_runs(tmp_path, tiny_encoder):
    """Search and dedup in a loop during a build: never an error, always a committed state."""
    from indexer.dedup import dedup
    from indexer.search import Searcher
    from indexer.settings import Settings

    root = tmp_path / "pics"
    make_distinct_jpegs(root / "a", 20, seed=1)
    index = tmp_path / "index"
    first = run_build(index, root)
    assert first.wait(timeout=300) == 0
    make_distinct_jpegs(root / "b", 80, seed=2)
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER))
    searcher = Searcher(settings, encoder=tiny_encoder)
    query = root / "a" / "img_0003.jpg"
    proc = run_build(index, root)
    rounds = 0
    while proc.poll() is None or rounds < 3:
        hits = searcher.search_image(query, k=10)
        assert hits[0].path == str(query) and hits[0].score > 0.999
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        report = dedup(index)  # reads the same committed state, no error
        assert all(g.keep in {m["path"] for m in g.members} for g in report.groups)
        rounds += 1
    assert proc.returncode == 0
    assert rounds >= 3
    hits = searcher.search_image(root / "b" / "img_0070.jpg", k=1)
    assert hits[0].path == str(root / "b" / "img_0070.jpg")
