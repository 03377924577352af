"""The catalog's schema version: what every open checks, and the one migration runner.

A migration is a named function of the connection (or a list of SQL statements); the runner
applies each one with its `user_version` inside one `BEGIN IMMEDIATE … COMMIT`, so a step that
fails leaves the catalog as it was, and two processes opening an old catalog at once never both
apply a step.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from indexer.errors import CatalogError

BUSY_SECONDS = 30.0  # how long a connection waits for another's write lock
# one schema step: a function that runs its statements on the connection (no commits), or
# the statements themselves
Migration = Callable[[sqlite3.Connection], None] | Sequence[str]


class NewerCatalogError(CatalogError):
    """The catalog was written by a newer photo-index: every command refuses it."""


class ForeignSchemaError(CatalogError):
    """The catalog holds SQL photo-index did not write (a trigger, view, table or index, or one
    of ours redefined): every command refuses it, `index verify` reports it."""

    def __init__(self, path: str, objects: list[str]) -> None:
        self.objects = objects
        shown = "; ".join(objects[:3]) + (f"; and {len(objects) - 3} more" if objects[3:] else "")
        super().__init__(
            f"{path}: {shown}: not part of photo-index's schema (SQL someone else added), so "
            "the catalog is not used; `index verify --repair` rebuilds it from its rows "
            "without them and keeps the old file beside it"
        )


# Names SQLite itself creates in a database (ANALYZE's statistics, AUTOINCREMENT's counters).
SQLITE_OWN = frozenset({"sqlite_stat1", "sqlite_stat4", "sqlite_sequence"})


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection with explicit transactions (isolation_level=None).

    pysqlite's default mode sends no BEGIN before DDL, which would run every CREATE outside the
    transaction; here `BEGIN IMMEDIATE` really covers the statements that follow it.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_SECONDS)
    distrust_schema(conn)
    return conn


def distrust_schema(conn: sqlite3.Connection) -> None:
    """SQL stored in the database (views, triggers, defaults) may not call functions with side
    effects: the catalog is a file anyone may have edited."""
    conn.execute("PRAGMA trusted_schema = OFF")


def _normal(sql: str | None) -> str | None:
    """SQL text without differences of layout (runs of blanks, blanks next to brackets/commas)."""
    if sql is None:
        return None
    return re.sub(r"\s*([(),])\s*", r"\1", " ".join(sql.split()))


def _objects(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[str, str | None]]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return {(kind, name): (table, _normal(sql)) for kind, name, table, sql in rows}


@functools.lru_cache(maxsize=8)
def _expected(steps: tuple[Migration, ...]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """The schema objects `steps` create, as a fresh database shows them."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for step in steps:
            _apply(conn, step)
        return _objects(conn)
    finally:
        conn.close()


def foreign_objects(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[str]:
    """What in the database our migrations up to its schema version did not create (or created
    otherwise, or that is missing), one phrase each: "trigger 'x' on 'files'"."""
    steps = migrations[: user_version(conn)]
    want = _expected(tuple(s if callable(s) else tuple(s) for s in steps))
    found = _objects(conn)
    out = []
    for (kind, name), (table, sql) in sorted(found.items()):
        on = f" on {table!r}" if kind in ("trigger", "index") else ""
        if (kind, name) not in want:
            if not (kind == "table" and name in SQLITE_OWN):
                out.append(f"{kind} {name!r}{on}")
        elif want[(kind, name)] != (table, sql):
            out.append(f"{kind} {name!r}{on} (not as photo-index defines it)")
    out.extend(f"{kind} {name!r} is missing" for kind, name in sorted(want.keys() - found.keys()))
    return out


def check_objects(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """ForeignSchemaError naming what in the database is not our schema, if anything."""
    foreign = foreign_objects(conn, migrations)
    if foreign:
        raise ForeignSchemaError(_name(conn), foreign)


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0] or 0)


def _name(conn: sqlite3.Connection) -> str:
    return conn.execute("PRAGMA database_list").fetchone()[2] or ":memory:"


def check(conn: sqlite3.Connection, latest: int, *, readonly: bool = False) -> int:
    """The catalog's schema version, or CatalogError when this photo-index cannot use it.

    Newer than `latest` is refused by every command; a reader also needs exactly `latest`.
    """
    version = user_version(conn)
    if version > latest:
        raise NewerCatalogError(
            f"{_name(conn)} was written by a newer photo-index (schema {version}; this one "
            f"reads up to {latest}): upgrade photo-index (pip install -U photo-index)"
        )
    if readonly and version < latest:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version == 0 and not tables:
            raise CatalogError(
                f"{_name(conn)} is empty (a build that never finished?): "
                "run `index build PATH` to create it"
            )
        raise CatalogError(
            f"{_name(conn)}: catalog schema {version} is older than {latest}; "
            "run `index build` once to upgrade it"
        )
    return version


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the database to schema len(migrations), one atomic step per migration.

    `conn` must come from `connect` (explicit transactions). Returns the version reached.
    """
    if conn.isolation_level is not None or conn.in_transaction:
        raise ValueError("migrate needs a connection from schema.connect, outside a transaction")
    latest = len(migrations)
    while (version := check(conn, latest)) < latest:
        try:
            conn.execute("BEGIN IMMEDIATE")
            version = check(conn, latest)  # another process may have migrated meanwhile
            if version < latest:
                _apply(conn, migrations[version])
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                named = getattr(migrations[version], "__name__", None)
                step = f"schema {version + 1}" + (f" ({named})" if named else "")
                raise CatalogError(
                    f"{_name(conn)}: upgrading the catalog to {step} failed "
                    f"({exc}); it is unchanged at schema {version}"
                ) from None
            raise
    return latest


def _apply(conn: sqlite3.Connection, step: Migration) -> None:
    if callable(step):
        step(conn)
    else:
        for statement in step:
            conn.execute(statement)
