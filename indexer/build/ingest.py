"""What one build writes into the catalog: contents with their vectors, paths, orphans, and the
failure ledger; it tracks the content ids added and removed so FAISS can follow.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, insert, select, update

from indexer import files as fs
from indexer.build.pipeline import EncodedBatch
from indexer.build.plan import Plan
from indexer.store import tombstones
from indexer.store import vector_codec as codec
from indexer.store.catalog import Catalog, Content, Failure, File, chunked


class CatalogWrites:
    """Set-based writes inside the caller's transactions; counts go to the build summary."""

    def __init__(self, summary: Any) -> None:
        self.summary = summary  # BuildSummary: .embedded and .failed (this run's) counted here
        self.added: set[int] = set()
        self.removed: set[int] = set()
        self.started = time.time()

    def store(
        self,
        session: Any,
        batch: EncodedBatch,
        entries: dict[str, list[fs.FileEntry]],
        reembed: dict[str, int],
    ) -> None:
        """One batch's contents and paths in a few set-based statements (not one per row:
        per-row ORM flushes cost ~1 ms an image, a ceiling under a GPU's rate).

        A key is a content hash, or a path whose hash the decode worker computed; such a hash
        is looked up first (the plan only sends files whose size no indexed file has).
        """
        now = time.time()
        decoded = batch.decoded
        digests = [d or k for k, d in zip(decoded.keys, decoded.digests, strict=True)]
        known = dict(reembed)
        worker_hashed = [d for k, d in zip(decoded.keys, digests, strict=True) if d != k]
        for chunk in chunked(worker_hashed):
            known.update((h, cid) for cid, h in session.execute(
                select(Content.id, Content.hash).where(Content.hash.in_(chunk))
            ))  # fmt: skip
        content_of: dict[str, int] = {}
        new_rows: dict[str, dict] = {}
        updates: dict[int, dict] = {}  # contents embedded again (after --reindex)
        for i, (key, digest) in enumerate(zip(decoded.keys, digests, strict=True)):
            meta = decoded.metas[i]
            fields = dict(
                size=entries[key][0].size,
                width=meta.width,
                height=meta.height,
                format=meta.format,
                taken_at=meta.taken_at,
                camera=meta.camera,
                pixels_from=meta.pixels_from,
                phash=decoded.phashes[i],
                vector=codec.encode(batch.vectors[i]),
                embedded_at=now,
                orphaned_at=None,
            )
            if digest in known:
                content_of[digest] = known[digest]
                updates[known[digest]] = {"id": known[digest], **fields}
            else:
                new_rows[digest] = {"hash": digest, **fields}  # twins in a batch: one row
        if updates:  # one executemany UPDATE by primary key
            session.execute(update(Content), list(updates.values()))
        if new_rows:
            inserted = session.execute(
                insert(Content).returning(Content.id, Content.hash), list(new_rows.values())
            )
            content_of.update({digest: cid for cid, digest in inserted})
        self.added.update(content_of.values())
        self.summary.embedded += len(decoded.keys)
        pairs = zip(decoded.keys, digests, strict=True)
        self.link(session, [(e, content_of[d]) for k, d in pairs for e in entries[k]])

    def store_batch(
        self,
        session: Any,
        batch: EncodedBatch,
        entries: dict[str, list[fs.FileEntry]],
        reembed: dict[str, int],
    ) -> None:
        """One batch from the pipeline: its contents and paths, and its failures in the ledger
        (a path that failed stops pointing at its old content)."""
        self.store(session, batch, entries, reembed)
        orphans: set[int] = set()
        for key, stage, reason in batch.decoded.failed:
            for entry in entries[key]:
                old = session.scalar(select(File.content_id).where(File.path == entry.path))
                if old is not None:
                    orphans.add(old)
                    session.execute(delete(File).where(File.path == entry.path))
                self.fail(session, entry, stage, reason)
                self.unplan(entry, was_indexed=old is not None)
        self.drop_orphans(session, orphans)
        if batch.decoded.keys:
            Catalog.bump_generation(session)

    def unplan(self, entry: fs.FileEntry, was_indexed: bool) -> None:
        """A file the plan counted as new (or changed) failed: it is counted once, as failed,
        so `new + changed + moved + unchanged` stays the paths indexed under the roots."""
        if was_indexed:
            self.summary.changed = max(0, self.summary.changed - 1)
        else:
            self.summary.new = max(0, self.summary.new - 1)

    def link(self, session: Any, links: list[tuple[fs.FileEntry, int]]) -> None:
        """Point each path at its content (insert or update, reviving a tombstone), clear its
        ledger entry, and bury contents a path moved away from when nothing else points at them."""
        now = time.time()
        paths = [entry.path for entry, _ in links]
        existing: dict[str, File] = {}
        for chunk in chunked(paths):
            existing.update((row.path, row) for row in session.scalars(
                select(File).where(File.path.in_(chunk))
            ))  # fmt: skip
        new_files, replaced = [], set()
        for entry, content_id in links:
            values = dict(
                content_id=content_id, size=entry.size, mtime_ns=entry.mtime_ns, indexed_at=now
            )
            row = existing.get(entry.path)
            if row is None:
                new_files.append({"path": entry.path, **values})
                continue
            if row.content_id != content_id:
                replaced.add(row.content_id)
            for key, value in values.items():
                setattr(row, key, value)
        if new_files:
            session.execute(insert(File), new_files)
        for chunk in chunked(paths):
            session.execute(delete(Failure).where(Failure.path.in_(chunk)))
        revived = tombstones.revive(session, {content_id for _, content_id in links})
        if revived:  # a path came back to a tombstone: its vector returns to FAISS
            self.added.update(revived)
            Catalog.bump_generation(session)
        self.drop_orphans(session, replaced)

    def drop_orphans(self, session: Any, candidates: set[int]) -> None:
        """Contents no path points at any more leave FAISS; their rows and vectors stay as
        tombstones for the grace period (a restore or a move relinks them, see tombstones)."""
        if not candidates:
            return
        gone = tombstones.bury(session, candidates)
        if gone:
            self.removed.update(gone)
            self.added.difference_update(gone)
            Catalog.bump_generation(session)

    def bury_pathless(self, session: Any) -> set[int]:
        """Contents left without a path by other means (an older version, a salvage) become
        tombstones too; returns the sizes of all tombstones (a new file of such a size may be
        one of them coming back: the plan hashes it ahead to relink it)."""
        gone = tombstones.bury_pathless(session, self.started)
        if gone:
            self.removed.update(gone)
            Catalog.bump_generation(session)
        return tombstones.sizes(session)

    def expire(self, session: Any, days: float) -> None:
        """Drop tombstones buried more than `days` before this build started."""
        tombstones.expire(session, self.started - days * tombstones.DAY)

    def fail(self, session: Any, entry: fs.FileEntry, stage: str, reason: str) -> None:
        """Ledger a file this run tried and could not index (counted: the build exits 3)."""
        record_failure(session, entry.path, stage, reason, entry.size, entry.mtime_ns)
        self.summary.failed += 1

    def apply(self, session: Any, plan: Plan, tombstone_days: float) -> None:
        """Write a build plan: its ledger entries, removed paths, links to known content and
        the tombstones they leave (what it embeds is stored batch by batch, see store_batch)."""
        for failure in plan.failures:
            self.fail(session, failure.entry, failure.stage, failure.reason)
        for chunk in chunked(plan.ledger_gone):
            session.execute(delete(Failure).where(Failure.path.in_(chunk)))
        for chunk in chunked(plan.deleted):
            session.execute(delete(File).where(File.path.in_(chunk)))
        self.link(session, plan.links)
        self.drop_orphans(session, plan.orphans)
        self.expire(session, tombstone_days)


def record_failure(
    session: Any, path: str, stage: str, reason: str, size: int | None, mtime_ns: int | None
) -> None:
    """Ledger `path`: a new row, or one more attempt with the latest stage and reason."""
    now = time.time()
    row = session.get(Failure, path)
    if row is None:
        row = Failure(path=path, attempts=0, first_seen=now)
        session.add(row)
    row.stage, row.reason, row.attempts, row.last_seen = stage, reason, row.attempts + 1, now
    row.size, row.mtime_ns = size, mtime_ns
