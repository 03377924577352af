"""Tombstones: a content whose last path went away keeps its row and vector for a grace period.

A restore from backup, a drive mounted again after `--prune`, or a move between roots then
relinks by content hash instead of embedding again. A tombstone is out of FAISS (only contents
with a path are searchable); the next build drops those older than `tombstone_days`, and
`index gc` drops them all now. This module is the one place that decides what becomes one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select, update

from indexer.settings import Settings
from indexer.store.catalog import Catalog, Content, File, buried, chunked, has_file
from indexer.store.locking import WriterLock

DAY = 86_400.0


def bury(session: Any, candidates: Iterable[int], now: float | None = None) -> list[int]:
    """Make tombstones of the `candidates` no path points at any more; returns their ids."""
    out: list[int] = []
    session.flush()
    for chunk in chunked(sorted(set(candidates))):
        still = set(
            session.scalars(select(File.content_id).where(File.content_id.in_(chunk))).all()
        )
        gone = [c for c in chunk if c not in still]
        if gone:
            session.execute(
                update(Content)
                .where(Content.id.in_(gone), Content.orphaned_at.is_(None))
                .values(orphaned_at=now or time.time())
            )
            out.extend(gone)
    return out


def bury_pathless(session: Any, now: float | None = None) -> list[int]:
    """Date the contents left without a path by other means (an older version, a salvage)."""
    return list(
        session.scalars(
            update(Content)
            .where(Content.orphaned_at.is_(None), ~has_file())
            .values(orphaned_at=now or time.time())
            .returning(Content.id)
        )
    )


def revive(session: Any, content_ids: Iterable[int]) -> list[int]:
    """Clear the tombstone of contents a path points at again; returns those ids (their
    vectors go back into FAISS)."""
    revived: list[int] = []
    for chunk in chunked(sorted(set(content_ids))):
        revived.extend(
            session.scalars(
                update(Content)
                .where(Content.id.in_(chunk), Content.orphaned_at.is_not(None))
                .values(orphaned_at=None)
                .returning(Content.id)
            )
        )
    return revived


def sizes(session: Any) -> set[int]:
    """Byte sizes of tombstoned contents: a new file of such a size may be one coming back."""
    return set(session.scalars(select(Content.size).where(buried()).distinct()))


def expire(session: Any, before: float | None = None) -> dict[str, int]:
    """Drop tombstones buried before `before` (None: all of them); returns their count and
    the bytes of vectors they held."""
    gone = ~has_file()
    if before is not None:
        gone = gone & (Content.orphaned_at < before)
    freed = session.scalar(select(func.sum(func.length(Content.vector))).where(gone))
    ids = session.scalars(delete(Content).where(gone).returning(Content.id)).all()
    return {"dropped": len(ids), "bytes": int(freed or 0)}


def gc(settings: Settings) -> dict[str, int]:
    """`index gc`: drop every tombstone now (their pictures will be embedded again if they come
    back). FAISS does not hold them, so it is not touched."""
    Catalog(settings.index, readonly=True).close()  # "no index here" rather than a new one
    with WriterLock(settings.index):
        cat = Catalog(settings.index)
        try:
            with cat.session() as s:
                return expire(s)
        finally:
            cat.close()
