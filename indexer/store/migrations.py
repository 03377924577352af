"""The catalog's numbered migrations: append, never edit. Each runs in one transaction
(`schema.migrate`), and `schema.foreign_objects` holds every catalog to what they create.
"""

from __future__ import annotations

import sqlite3

from indexer.store import schema


def m001_initial(conn: sqlite3.Connection) -> None:
    """Contents (one row per distinct content), files (paths), the failure ledger, meta, runs."""
    for statement in (
        """CREATE TABLE contents (
            id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, size BIGINT NOT NULL,
            width INTEGER, height INTEGER, format TEXT, taken_at TEXT, camera TEXT,
            phash BIGINT, vector BLOB, embedded_at FLOAT)""",
        """CREATE TABLE files (
            id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE,
            content_id INTEGER NOT NULL REFERENCES contents(id),
            size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, indexed_at FLOAT NOT NULL)""",
        "CREATE INDEX ix_files_content_id ON files(content_id)",
        """CREATE TABLE failures (
            path TEXT PRIMARY KEY, stage TEXT NOT NULL, reason TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 1, first_seen FLOAT NOT NULL,
            last_seen FLOAT NOT NULL, size BIGINT, mtime_ns BIGINT)""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY, started_at FLOAT NOT NULL, finished_at FLOAT,
            status TEXT NOT NULL, summary TEXT)""",
    ):
        conn.execute(statement)


def m002_tombstones(conn: sqlite3.Connection) -> None:
    """Contents no path uses any more are kept as tombstones, stamped `orphaned_at`."""
    conn.execute("ALTER TABLE contents ADD COLUMN orphaned_at FLOAT")
    conn.execute("CREATE INDEX ix_contents_orphaned_at ON contents(orphaned_at)")


def m003_decisions(conn: sqlite3.Connection) -> None:
    """Decisions that persist (indexer.dedup.decisions), keyed by content hash, not path."""
    conn.execute(
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('keep', 'distinct')),
            hashes TEXT NOT NULL, paths TEXT NOT NULL, created_at FLOAT NOT NULL, note TEXT)"""
    )
    conn.execute("CREATE UNIQUE INDEX ix_decisions_kind_hashes ON decisions(kind, hashes)")


def m004_raw_pixels_from(conn: sqlite3.Connection) -> None:
    """RAW files: which pixels were embedded, the preview JPEG or a demosaic (indexer.raw)."""
    conn.execute("ALTER TABLE contents ADD COLUMN pixels_from TEXT")


MIGRATIONS: list[schema.Migration] = [
    m001_initial,
    m002_tombstones,
    m003_decisions,
    m004_raw_pixels_from,
]
SCHEMA_VERSION = len(MIGRATIONS)
