"""The SQLite catalog (SQLAlchemy 2): the one source of truth for files, contents and vectors.

Everything needed to rebuild the FAISS index lives here, vectors included, so a crash or a
corrupt index file never costs re-embedding. Schema changes are numbered migrations.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from indexer.errors import DamagedCatalogError, describe_os_error
from indexer.hints import no_index
from indexer.store import schema
from indexer.store.homefiles import check_plain
from indexer.store.migrations import MIGRATIONS, SCHEMA_VERSION  # noqa: F401 - re-exported
from indexer.store.salvage import SIDE_FILES, recover_interrupted
from indexer.store.schema import (  # noqa: F401 - the errors of an open
    CatalogError,
    ForeignSchemaError,
    NewerCatalogError,
)

CATALOG_FILE = "catalog.sqlite"
SQL_CHUNK = 900  # values per IN (...): SQLite's default limit is 999 bound variables


class Base(DeclarativeBase):
    pass


class Content(Base):
    """One distinct picture (by full-content hash); its id is the FAISS id."""

    __tablename__ = "contents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String)
    taken_at: Mapped[str | None] = mapped_column(String)
    camera: Mapped[str | None] = mapped_column(String)
    phash: Mapped[int | None] = mapped_column(BigInteger)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedded_at: Mapped[float | None] = mapped_column(Float)
    orphaned_at: Mapped[float | None] = mapped_column(Float)  # last path gone: a tombstone
    pixels_from: Mapped[str | None] = mapped_column(String)  # RAW: "preview" | "demosaic"


class File(Base):
    """A path on disk; several paths may share one content (byte-identical copies)."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String, unique=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    indexed_at: Mapped[float] = mapped_column(Float)


class Failure(Base):
    """The failure ledger: a file that could not be indexed, and why."""

    __tablename__ = "failures"
    path: Mapped[str] = mapped_column(String, primary_key=True)
    stage: Mapped[str] = mapped_column(String)
    reason: Mapped[str] = mapped_column(String)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    size: Mapped[int | None] = mapped_column(BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)


class Meta(Base):
    """Key/value JSON: schema version, encoder identity, index parameters, last build."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


class Run(Base):
    """One `index build`: when, how it ended, its summary."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String)
    summary: Mapped[str | None] = mapped_column(String)


IMMUTABLE = {"immutable": "1", "uri": "true"}  # readers on a read-only disk (SQLite URI query)


def has_file() -> Any:
    """SQL: a path points at this content (only those are in FAISS; others are tombstones)."""
    return select(File.id).where(File.content_id == Content.id).exists()


def buried() -> Any:
    """SQL condition: a tombstone (a range its index serves; IS NOT NULL makes SQLite scan)."""
    return Content.orphaned_at >= 0.0


def chunked(items: Sequence[Any], size: int = SQL_CHUNK) -> Iterator[Sequence[Any]]:
    """Slices of at most `size` items (default: SQL_CHUNK, for `column.in_(...)` queries)."""
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + max(1, size)]


class Catalog:
    """Open (and migrate) the catalog in an index folder; hand out short transactions."""

    def __init__(self, index_dir: str | Path, *, readonly: bool = False) -> None:
        self.index_dir = Path(index_dir)
        self.path = self.index_dir / CATALOG_FILE
        for name in (CATALOG_FILE, *(CATALOG_FILE + side for side in SIDE_FILES)):
            check_plain(self.index_dir / name)  # SQLite would follow a link
        recover_interrupted(self.path)  # a `verify --repair` killed mid-swap
        if readonly and not self.path.exists():
            raise CatalogError(no_index(self.index_dir))
        if not readonly:
            self.index_dir.mkdir(parents=True, exist_ok=True)
        url = URL.create("sqlite", database=str(self.path))  # verbatim: '?', '%' in names
        if readonly and not os.access(self.index_dir, os.W_OK):  # no WAL -shm file possible
            url = URL.create("sqlite", database=self.path.absolute().as_uri(), query=IMMUTABLE)
        self.engine: Engine = create_engine(url, future=True)
        event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._check_schema(readonly)
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            self.engine.dispose()
            if describe_os_error(exc, self.index_dir):  # a full disk or read-only, not damage
                raise
            raise DamagedCatalogError(
                f"{self.path}: the catalog is damaged ({getattr(exc, 'orig', exc)}); "
                "`index verify --repair` salvages every readable row"
            ) from None
        except CatalogError:
            self.engine.dispose()
            raise

    # --- schema -------------------------------------------------------------------------
    def _check_schema(self, readonly: bool) -> None:
        """Refuse a newer (or, read-only, an empty or older) catalog, or one holding SQL we did
        not write (schema.ForeignSchemaError); migrate a writable one."""
        raw = self.engine.raw_connection()
        try:
            schema.check(raw.driver_connection, SCHEMA_VERSION, readonly=readonly)
            schema.check_objects(raw.driver_connection, MIGRATIONS)  # before any write
        finally:
            raw.close()
        if not readonly:
            conn = schema.connect(self.path)
            try:
                schema.migrate(conn, MIGRATIONS)
            finally:
                conn.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def damage(self) -> str | None:
        """None if SQLite's quick_check passes, else what it reports."""
        try:
            with self.engine.connect() as conn:
                result = conn.exec_driver_sql("PRAGMA quick_check").scalar()
        except DatabaseError as exc:
            return str(exc.orig)
        return None if result == "ok" else str(result)

    # --- meta ---------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.session() as s:
            row = s.get(Meta, key)
            return default if row is None else json.loads(row.value)

    def all_meta(self) -> dict[str, Any]:
        with self.session() as s:
            return {m.key: json.loads(m.value) for m in s.scalars(select(Meta))}

    @staticmethod
    def set_meta(session: Session, key: str, value: Any) -> None:
        session.merge(Meta(key=key, value=json.dumps(value)))

    @staticmethod
    def bump_generation(session: Session) -> int:
        """Count changes to the vector set; the FAISS file records the one it reflects."""
        row = session.get(Meta, "generation")
        value = (json.loads(row.value) if row else 0) + 1
        session.merge(Meta(key="generation", value=json.dumps(value)))
        return value

    def generation(self) -> int:
        return int(self.get_meta("generation", 0))

    # --- counts and reads ---------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.session() as s:
            return {
                "images": s.scalar(select(func.count(File.id))) or 0,
                "vectors": s.scalar(
                    select(func.count(Content.id)).where(Content.vector.is_not(None), has_file())
                )
                or 0,
                "tombstones": s.scalar(select(func.count(Content.id)).where(buried())) or 0,
                "failures": s.scalar(select(func.count()).select_from(Failure)) or 0,
            }

    def expected_index(self) -> Any:
        """What a FAISS file of this catalog may hold (index_file.Expected): the vectors'
        dimension and at most as many vectors as the highest content id (one indexed lookup)."""
        from indexer.store.index_file import Expected  # faiss: only for those who read one

        with self.session() as s:
            top = s.scalar(select(func.max(Content.id))) or 0
        return Expected(dim=int(self.get_meta("dim", 0)), max_vectors=int(top))

    def vectors(self, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (ids int64, vectors float32 [n, dim]) for every embedded content with a path."""
        last = -1
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(Content.id, Content.vector)
                    .where(Content.vector.is_not(None), has_file(), Content.id > last)
                    .order_by(Content.id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            last = int(ids[-1])
            yield ids, vecs

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) at once; the empty case has shape (0, dim or 0)."""
        parts = list(self.vectors())
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.get_meta("dim", 0)), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def vectors_for(self, content_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the given contents that have a vector and a path, in id order."""
        ids = sorted(set(int(c) for c in content_ids))
        rows: list[Any] = []
        with self.session() as s:
            for chunk in chunked(ids):
                rows.extend(
                    s.execute(
                        select(Content.id, Content.vector).where(
                            Content.id.in_(chunk), Content.vector.is_not(None), has_file()
                        )
                    )
                )
        rows.sort(key=lambda r: r[0])
        dim = int(self.get_meta("dim", 0))
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        return (
            np.array([r[0] for r in rows], dtype=np.int64),
            np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]),
        )

    def sample_ids(self, n: int, seed: int = 0) -> list[int]:
        """Up to `n` random ids of embedded contents (a fixed seed keeps tuning repeatable)."""
        with self.session() as s:
            ids = s.scalars(select(Content.id).where(Content.vector.is_not(None), has_file())).all()
        if len(ids) <= n:
            return list(ids)
        rng = np.random.default_rng(seed)
        return sorted(int(i) for i in rng.choice(np.asarray(ids), size=n, replace=False))

    def vector_for(self, content_id: int) -> np.ndarray | None:
        with self.session() as s:
            blob = s.scalar(select(Content.vector).where(Content.id == content_id))
        return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()

    def records(self, content_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Files joined with their content metadata (one dict per path), for reports and UI."""
        query = (
            select(
                File.path,
                File.mtime_ns,
                File.content_id,
                Content.hash,
                Content.size,
                Content.width,
                Content.height,
                Content.format,
                Content.taken_at,
                Content.camera,
                Content.phash,
                Content.pixels_from,
            )
            .join(Content, Content.id == File.content_id)
            .order_by(File.path)
        )
        ids = None if content_ids is None else list(content_ids)
        rows: list[Any] = []
        with self.session() as s:
            if ids is None:
                rows = list(s.execute(query))
            else:
                for chunk in chunked(ids):
                    rows.extend(s.execute(query.where(File.content_id.in_(chunk))))
        return [dict(r._mapping) for r in rows]

    def failures(self) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(Failure).order_by(Failure.path)).all()
            return [
                {
                    "path": f.path,
                    "stage": f.stage,
                    "reason": f.reason,
                    "attempts": f.attempts,
                    "first_seen": f.first_seen,
                    "last_seen": f.last_seen,
                }
                for f in rows
            ]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA trusted_schema=OFF")  # stored SQL may not call side-effect functions
    cur.close()
