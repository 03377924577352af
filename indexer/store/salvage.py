"""Salvage a damaged SQLite catalog: copy every row that can still be read into a fresh one
(also how a catalog holding SQL someone else added is cleaned: only rows cross over).

The damaged file is kept beside it (`catalog.sqlite.damaged-<time>`); vectors that survive are
reused, so the next build re-embeds only what was lost. The swap survives a kill at any step:
`catalog.sqlite` always names a whole catalog, and the next open finishes or undoes the swap.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from indexer.atomic import atomic_path, fsync_path
from indexer.store.locking import IndexBusyError, WriterLock
from indexer.store.schema import Migration, connect, distrust_schema, migrate

TABLES = ("contents", "files", "failures", "meta", "runs", "decisions")
_CHUNK = 500
SIDE_FILES = ("-wal", "-shm", "-journal")
_GENERATION = "SELECT 1 FROM meta WHERE key = 'generation'"


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _rows(src: sqlite3.Connection, table: str, wanted: list[str]) -> tuple[list[str], list[tuple]]:
    """Readable rows of `table` (the `wanted` columns it has), chunk by chunk, row by row where
    a chunk fails. Only a real table is read: a view in its place may run any query."""
    try:
        kind = src.execute("SELECT type FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        if kind != ("table",):
            return [], []
        cols = [c for c in _columns(src, table) if c in wanted]
        top = src.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return [], []
    out: list[tuple] = []
    select = f"SELECT {', '.join(cols)} FROM {table} WHERE rowid BETWEEN ? AND ?"
    for start in range(0, top + 1, _CHUNK):
        try:
            out.extend(src.execute(select, (start, start + _CHUNK - 1)).fetchall())
        except sqlite3.DatabaseError:
            for rowid in range(start, start + _CHUNK):
                try:
                    out.extend(src.execute(select, (rowid, rowid)).fetchall())
                except sqlite3.DatabaseError:
                    continue
    return cols, out


def _copy_rows(path: Path, dst: sqlite3.Connection) -> dict[str, int]:
    """Copy the readable rows of the catalog at `path` into `dst` (inside its transaction)."""
    kept: dict[str, int] = {}
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        distrust_schema(src)
        for table in TABLES:
            cols, rows = _rows(src, table, _columns(dst, table))
            if cols:
                marks = ", ".join("?" for _ in cols)
                dst.executemany(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows
                )
            kept[table] = len(rows)
    finally:
        src.close()
    # files must point at surviving contents; contents without files are dropped later
    dst.execute("DELETE FROM files WHERE content_id NOT IN (SELECT id FROM contents)")
    dst.execute("DELETE FROM meta WHERE key = 'generation'")
    # a generation no FAISS file has seen: the next sync rebuilds it from these vectors
    dst.execute("INSERT INTO meta (key, value) VALUES ('generation', ?)", (str(time.time_ns()),))
    return kept


def salvage(catalog_path: str | Path, migrations: Sequence[Migration]) -> dict[str, int]:
    """Rebuild `catalog_path` from its readable rows; returns rows kept per table.

    The caller holds the index's WriterLock. The fresh catalog is built as `<name>.salvage`
    with the same migrations as every catalog, then swapped in by `_swap`.
    """
    path = Path(catalog_path)
    fresh = _fresh(path)
    _remove_with_side_files(fresh)
    try:
        dst = connect(fresh)
        try:
            migrate(dst, migrations)
            dst.execute("BEGIN IMMEDIATE")
            kept = _copy_rows(path, dst)
            dst.execute("COMMIT")
        finally:
            dst.close()
        fsync_path(fresh)
    except BaseException:
        _remove_with_side_files(fresh)  # the catalog was not touched
        raise
    _swap(path, fresh, _damaged_name(path))
    return kept


def _fresh(path: Path) -> Path:
    return path.with_name(path.name + ".salvage")


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _damaged_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while name.exists() or _side(name, "-wal").exists():
        name, n = path.with_name(f"{path.name}.damaged-{stamp}-{n}"), n + 1
    return name


def _keep(src: Path, dest: Path) -> None:
    """`dest` becomes a second name of `src` (a hard link; a copy where links are refused)."""
    if not src.exists() or (dest.exists() and os.path.samefile(src, dest)):
        return
    try:
        os.link(src, dest)
    except OSError:
        with atomic_path(dest, durable=True) as tmp:
            shutil.copyfile(src, tmp)


def _swap(path: Path, fresh: Path, damaged: Path | None) -> None:
    """Put the complete catalog `fresh` at `path`, keeping the old one (and its -wal) as `damaged`.

    The old catalog stays at `path` until one rename replaces it. Its -wal/-shm/-journal go
    before that rename, so no reader ever pairs the new catalog with the old one's log.
    Once `damaged` is a hard link of `path`, `recover_interrupted` finishes the swap.
    """
    if damaged is not None:
        _keep(path, damaged)
        for suffix in ("-wal", "-journal"):  # the damaged catalog's own log goes with it
            _keep(_side(path, suffix), _side(damaged, suffix))
        fsync_path(path.parent)
    for suffix in SIDE_FILES:
        _side(path, suffix).unlink(missing_ok=True)
    os.replace(fresh, path)
    fsync_path(path.parent)


def _remove_with_side_files(path: Path) -> None:
    for p in (path, *(_side(path, s) for s in SIDE_FILES)):
        p.unlink(missing_ok=True)


def _linked_damaged_copy(path: Path) -> Path | None:
    """The `.damaged-*` name that is a hard link of `path`: a swap had begun."""
    for candidate in path.parent.glob(path.name + ".damaged-*"):
        if candidate.name.endswith(SIDE_FILES + (".tmp",)):
            continue
        if os.path.samefile(candidate, path):
            return candidate
    return None


def _complete(fresh: Path) -> bool:
    """True if `fresh` is a whole salvaged catalog (opens, passes quick_check, committed rows)."""
    if _side(fresh, "-journal").exists():
        return False  # killed inside its transaction
    try:
        conn = sqlite3.connect(f"file:{fresh}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            # salvage writes the generation in its last commit
            return ok and bool(conn.execute(_GENERATION).fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False


def recover_interrupted(catalog_path: str | Path) -> None:
    """Finish or undo a salvage that was killed (a `<name>.salvage` left beside the catalog).

    Catalog missing and a complete `.salvage`: it becomes the catalog. Catalog present: the
    swap is finished if it had begun, else the partial `.salvage` is deleted. Skipped while
    another process holds the index's write lock (it may be salvaging right now).
    """
    path = Path(catalog_path)
    if not _fresh(path).exists():
        return
    with ExitStack() as stack:
        try:
            stack.enter_context(WriterLock(path.parent))
        except (IndexBusyError, OSError):
            return
        fresh = _fresh(path)
        if not fresh.exists():
            return  # another process finished it while we waited
        if not path.exists():
            if _complete(fresh):
                _swap(path, fresh, None)
            else:
                _remove_with_side_files(fresh)
            return
        damaged = _linked_damaged_copy(path)
        if damaged is not None:
            _swap(path, fresh, damaged)
        else:
            _remove_with_side_files(fresh)
