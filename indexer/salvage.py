"""Salvage a damaged SQLite catalog: copy every row that can still be read into a fresh one.

The damaged file is kept beside it (`catalog.sqlite.damaged-<time>`); vectors that survive are
reused, so the next build re-embeds only what was lost.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

TABLES = ("contents", "files", "failures", "meta", "runs")
_CHUNK = 500


def _rows(src: sqlite3.Connection, table: str) -> tuple[list[str], list[tuple]]:
    """Readable rows of `table`, chunk by chunk, row by row where a chunk fails."""
    try:
        cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
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


def salvage(catalog_path: str | Path) -> dict[str, int]:
    """Rebuild `catalog_path` from its readable rows; returns rows kept per table."""
    from indexer.catalog import MIGRATIONS

    path = Path(catalog_path)
    fresh = path.with_name(path.name + ".salvage")
    fresh.unlink(missing_ok=True)
    dst = sqlite3.connect(fresh)
    for number, statements in enumerate(MIGRATIONS, start=1):
        for statement in statements:
            dst.execute(statement)
        dst.execute(f"PRAGMA user_version = {number}")
    kept: dict[str, int] = {}
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for table in TABLES:
            cols, rows = _rows(src, table)
            if cols:
                marks = ", ".join("?" for _ in cols)
                dst.executemany(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows
                )
            kept[table] = len(rows)
        # files must point at surviving contents; contents without files are dropped later
        dst.execute("DELETE FROM files WHERE content_id NOT IN (SELECT id FROM contents)")
        dst.execute("DELETE FROM meta WHERE key = 'generation'")
        # a generation no FAISS file has seen: the next sync rebuilds it from these vectors
        dst.execute(
            "INSERT INTO meta (key, value) VALUES ('generation', ?)", (str(time.time_ns()),)
        )
        dst.commit()
    finally:
        src.close()
        dst.close()
    with open(fresh, "rb") as fh:
        os.fsync(fh.fileno())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    os.replace(path, path.with_name(f"{path.name}.damaged-{stamp}"))
    os.replace(fresh, path)
    return kept
