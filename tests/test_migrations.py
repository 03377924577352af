"""Catalog schema: atomic migrations, one migrator at a time, newer and empty catalogs refused."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import PHOTOS, TINY_BIRDER, invoke
from streamlit.testing.v1 import AppTest

from indexer.store import schema
from indexer.store.catalog import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Catalog,
    CatalogError,
    NewerCatalogError,
)

APP = str(Path(__file__).resolve().parents[1] / "search_ui" / "app.py")
NEWER = SCHEMA_VERSION + 3


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return schema.user_version(conn)


def test_failed_migration_changes_nothing_and_the_next_run_upgrades(tmp_path):
    index = tmp_path / "index"
    cat = Catalog(index)
    with cat.session() as s:
        Catalog.set_meta(s, "note", "kept")
    cat.close()
    path = index / "catalog.sqlite"
    failing = [*MIGRATIONS, ["CREATE TABLE added (x INTEGER)", "CREATE TABLE broken ("]]
    conn = schema.connect(path)
    with pytest.raises(CatalogError, match=f"unchanged at schema {SCHEMA_VERSION}"):
        schema.migrate(conn, failing)
    conn.close()
    # the DDL before the failing statement was rolled back with it
    assert version(path) == SCHEMA_VERSION and "added" not in tables(path)
    assert Catalog(index, readonly=True).get_meta("note") == "kept"
    Catalog(index).close()  # a writable open (the real migrations) still works

    good = [*MIGRATIONS, ["CREATE TABLE added (x INTEGER)", "CREATE INDEX ix_x ON added(x)"]]
    conn = schema.connect(path)
    assert schema.migrate(conn, good) == SCHEMA_VERSION + 1
    assert schema.migrate(conn, good) == SCHEMA_VERSION + 1  # nothing left to do
    conn.close()
    assert version(path) == SCHEMA_VERSION + 1 and "added" in tables(path)
    with closing(sqlite3.connect(path)) as conn:  # the rows are still there
        assert conn.execute("SELECT value FROM meta WHERE key = 'note'").fetchone() == ('"kept"',)
    with pytest.raises(NewerCatalogError):  # and this photo-index now reads it as newer
        Catalog(index, readonly=True)


def test_two_openers_of_an_old_catalog_migrate_it_once(tmp_path):
    index = tmp_path / "index"
    Catalog(index).close()
    path = index / "catalog.sqlite"
    # not idempotent: running it twice would fail with "table big already exists"
    slow = [
        *MIGRATIONS,
        [
            "CREATE TABLE big AS WITH RECURSIVE c(x) AS "
            "(SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000) SELECT x FROM c"
        ],
    ]
    blocker = schema.connect(path)
    blocker.execute("BEGIN IMMEDIATE")  # both openers read version 1, then wait for the lock
    results: list[object] = []

    def opener() -> None:
        conn = schema.connect(path)
        try:
            results.append(schema.migrate(conn, slow))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            results.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=opener) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    blocker.execute("COMMIT")
    blocker.close()
    for t in threads:
        t.join(timeout=60)
    assert results == [SCHEMA_VERSION + 1] * 2
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone()[0] == 100000


@pytest.fixture
def newer_index(tmp_path) -> Path:
    """A catalog as a future photo-index would leave it: schema NEWER."""
    index = tmp_path / "index"
    Catalog(index).close()
    with closing(sqlite3.connect(index / "catalog.sqlite")) as conn:
        conn.execute(f"PRAGMA user_version = {NEWER}")
    return index


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["failures"],
        ["verify"],
        ["verify", "--repair"],
        ["dedup"],
        ["search", PHOTOS / "flat" / "cat.jpg", "--weights", TINY_BIRDER, "--device", "cpu"],
        ["build", PHOTOS / "flat", "--weights", TINY_BIRDER, "--workers", "1", "--quiet"],
    ],
    ids=["stats", "failures", "verify", "repair", "dedup", "search", "build"],
)
def test_newer_catalog_is_refused_by_every_command(newer_index, command):
    result = invoke(*command, "--index", newer_index)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert result.stderr == (
        f"error: {newer_index / 'catalog.sqlite'} was written by a newer photo-index "
        f"(schema {NEWER}; this one reads up to {SCHEMA_VERSION}): "
        "upgrade photo-index (pip install -U photo-index)\n"
    )
    assert version(newer_index / "catalog.sqlite") == NEWER  # untouched
    assert {p.name for p in newer_index.iterdir()} <= {"catalog.sqlite", "write.lock"}


def test_newer_catalog_is_refused_by_the_ui(monkeypatch, newer_index):
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(newer_index))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    shown = at.error[0].value.replace("\\", "")  # markdown escapes
    assert f"schema {NEWER}; this one reads up to {SCHEMA_VERSION}" in shown
    assert "upgrade photo-index (pip install -U photo-index)" in shown
    assert not at.info  # no "build one with" hint: building would not help


def test_empty_catalog_says_how_to_create_it(tmp_path, photos, settings, tiny_encoder):
    from indexer.build import build

    index = settings.index
    index.mkdir()
    (index / "catalog.sqlite").write_bytes(b"")  # a first build killed before its first write
    for command in (["stats"], ["failures"], ["verify"]):
        result = invoke(*command, "--index", index)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        assert result.stderr == (
            f"error: {index / 'catalog.sqlite'} is empty (a build that never finished?): "
            "run `index build PATH` to create it\n"
        )
    summary = build([photos / "flat"], settings, encoder=tiny_encoder)
    assert summary.images > 0
    assert invoke("stats", "--index", index).exit_code == 0


def test_a_failing_named_migration_is_named_and_changes_nothing(tmp_path):
    """Migrations are named functions: the one that fails is named, its DDL rolled back."""
    index = tmp_path / "index"
    Catalog(index).close()
    path = index / "catalog.sqlite"

    def m099_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE added (x INTEGER)")
        conn.execute("CREATE TABLE broken (")

    conn = schema.connect(path)
    with pytest.raises(CatalogError, match=rf"schema {SCHEMA_VERSION + 1} \(m099_broken\) fail"):
        schema.migrate(conn, [*MIGRATIONS, m099_broken])
    conn.close()
    assert version(path) == SCHEMA_VERSION and "added" not in tables(path)
    assert [m.__name__ for m in MIGRATIONS][:3] == [
        "m001_initial",
        "m002_tombstones",
        "m003_decisions",
    ]
