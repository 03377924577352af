"""`verify --repair` killed mid-swap: the next open finishes or undoes it, nothing is re-embedded.

A kill cannot be aimed between two syscalls from outside, so these tests lay out on disk each
state a kill can leave (the old two-rename swap's too) and run the commands on it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from conftest import PHOTOS, TINY_BIRDER, invoke

from indexer.build import build
from indexer.settings import Settings
from indexer.store.catalog import MIGRATIONS, Catalog
from indexer.store.salvage import salvage
from indexer.verify import verify

CATALOG = "catalog.sqlite"
DAMAGED = CATALOG + ".damaged-20260101-000000"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_encoder) -> tuple[Path, Path, bytes]:
    """(photos, a built index, the bytes of a complete salvage of its catalog)."""
    base = tmp_path_factory.mktemp("salvage")
    photos = base / "photos"
    shutil.copytree(PHOTOS / "flat", photos)
    index = base / "index"
    build([photos], _settings(index), encoder=tiny_encoder)
    scratch = base / "scratch"
    shutil.copytree(index, scratch)
    salvage(scratch / CATALOG, MIGRATIONS)
    assert not (scratch / (CATALOG + ".salvage")).exists()
    return photos, index, (scratch / CATALOG).read_bytes()


def _settings(index: Path) -> Settings:
    return Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damage(path: Path) -> None:
    """Overwrite part of a page in the middle: quick_check fails, the file still opens."""
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 3 + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))


def _add_own_wal(path: Path) -> None:
    """Give `path` a -wal holding a committed row its main file lacks (as a live catalog has)."""
    keep = {p: p.with_name(p.name + ".keep") for p in (path, Path(f"{path}-wal"))}
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("INSERT INTO runs (started_at, status) VALUES (0, 'in the wal')")
        conn.commit()
        for src, dest in keep.items():  # snapshot before the checkpoint that close makes
            shutil.copyfile(src, dest)
    for src, dest in keep.items():
        dest.rename(src)


def lay_out(state: str, index: Path, complete: bytes) -> None:
    """The files a kill leaves in `index` at each step of a salvage."""
    cat = index / CATALOG
    fresh = index / (CATALOG + ".salvage")
    if state == "old swap: killed between its two renames":
        cat.rename(index / DAMAGED)
        fresh.write_bytes(complete)
    elif state == "killed while copying rows":
        fresh.write_bytes(complete[: len(complete) // 2])
        (index / (CATALOG + ".salvage-journal")).write_bytes(b"\x00" * 512)
    elif state == "killed after keeping the damaged file, before the -wal went":
        _add_own_wal(cat)
        _damage(cat)
        os.link(cat, index / DAMAGED)
        fresh.write_bytes(complete)
    elif state == "killed after the -wal went, before the rename":
        _damage(cat)
        os.link(cat, index / DAMAGED)
        fresh.write_bytes(complete)
    else:  # pragma: no cover
        raise ValueError(state)


STATES = [
    "old swap: killed between its two renames",
    "killed while copying rows",
    "killed after keeping the damaged file, before the -wal went",
    "killed after the -wal went, before the rename",
]


@pytest.mark.parametrize("state", STATES)
def test_every_command_opens_the_index_after_a_killed_repair(built, tmp_path, state, tiny_encoder):
    photos, template, complete = built
    index = tmp_path / "index"
    shutil.copytree(template, index)
    original = _digest(index / CATALOG)
    lay_out(state, index, complete)

    stats = invoke("stats", "--index", index, "--json")  # the first open recovers
    assert stats.exit_code == 0, stats.output
    names = {p.name for p in index.iterdir()}
    assert not {n for n in names if ".salvage" in n}, names
    assert CATALOG + "-journal" not in names
    with closing(sqlite3.connect(index / CATALOG)) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    if state == "killed while copying rows":
        assert _digest(index / CATALOG) == original  # the old catalog was never touched
    else:
        assert DAMAGED in names  # the damaged file is kept beside the salvaged one
    if "before the -wal went" in state:  # the -wal went with the damaged file, not the new one
        with closing(sqlite3.connect(index / DAMAGED)) as conn:
            runs = conn.execute("SELECT status FROM runs").fetchall()
        assert ("in the wal",) in runs

    for command in (["failures"], ["dedup"], ["search", photos / "cat.jpg"], ["verify"]):
        extra = ["--weights", TINY_BIRDER, "--device", "cpu"] if command[0] == "search" else []
        result = invoke(*command, *extra, "--index", index)
        assert result.stderr == "" and not isinstance(result.exception, Exception), result.output
        # verify may say the FAISS file lags the salvaged catalog (--repair or a build fixes it)
        problems = [x for x in result.output.splitlines() if x.startswith("problem: ")]
        lags = ["problem: the FAISS file is older than the catalog; --repair resaves it"]
        allowed = [(0, [])] + ([(1, lags)] if command == ["verify"] else [])
        assert (result.exit_code, problems) in allowed, result.output
    again = build([photos], _settings(index), encoder=tiny_encoder)
    assert (
        again.embedded == 0
        and again.vectors == Catalog(template, readonly=True).counts()["vectors"]
    )
    assert verify(_settings(index))["problems"] == {}


def test_a_salvage_in_progress_is_left_alone(built, tmp_path):
    """Another process holds the write lock (it may be writing the .salvage): readers wait."""
    _photos, template, complete = built
    index = tmp_path / "index"
    shutil.copytree(template, index)
    fresh = index / (CATALOG + ".salvage")
    fresh.write_bytes(complete[:8192])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from indexer.store.locking import WriterLock\n"
            "with WriterLock(sys.argv[1]):\n    print('locked', flush=True); sys.stdin.read()",
            str(index),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert invoke("stats", "--index", index).exit_code == 0
        assert fresh.exists()  # not deleted under the salvaging process's feet
    finally:
        holder.communicate("", timeout=30)
    assert invoke("stats", "--index", index).exit_code == 0
    assert not fresh.exists()  # cleaned by the next open once the lock is free


def test_repair_swaps_in_one_step_and_keeps_the_damaged_file_with_its_wal(built, tmp_path):
    _photos, template, _complete = built
    index = tmp_path / "index"
    shutil.copytree(template, index)
    _add_own_wal(index / CATALOG)
    _damage(index / CATALOG)
    report = verify(_settings(index), repair=True)
    assert report["repaired"] and any("salvaged" in m for m in report["messages"])
    names = {p.name for p in index.iterdir()}
    damaged = [n for n in names if n.startswith(CATALOG + ".damaged-") and "-wal" not in n]
    assert len(damaged) == 1 and damaged[0] + "-wal" in names
    assert not {n for n in names if ".salvage" in n}
    with closing(sqlite3.connect(index / CATALOG)) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        # the row that lived only in the old -wal was salvaged, not replayed onto the new file
        assert conn.execute("SELECT count(*) FROM runs WHERE status = 'in the wal'").fetchone() == (
            1,
        )
