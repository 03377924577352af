"""One `index build` run: scan → hash → link known content → embed new content → sync FAISS.

Every embedded batch is committed to SQLite before the next one is encoded, so a killed build
loses at most one batch of work and the next run picks up exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from indexer import files as fs
from indexer import sync
from indexer.catalog import Catalog, Content, Failure, File, Run, chunked
from indexer.clock import Laps
from indexer.home import open_for_build
from indexer.ingest import CatalogWrites
from indexer.interrupts import Interrupted, deferred, signum_of
from indexer.pipeline import DecodeJob, EncodedBatch, encode_batches
from indexer.rehash import refresh_phashes
from indexer.settings import Settings
from indexer.summary import BuildSummary
from indexer.vanished import VanishGuard, unknown_root

# progress(event, **fields): "scan" (found=), "embed-start" (total=), "embed" (done=, failed=)
ProgressFn = Callable[..., None]


class BuildError(Exception):
    """A build that cannot start (wrong encoder for this index, bad roots...)."""


def encoder_identity_changed(pinned: dict | None, identity: dict) -> bool:
    """Is `identity` a different encoder than the one the index was built with?"""
    if not pinned:
        return False
    keys = ("weights_sha256", "architecture", "preprocess", "dim")
    return any(pinned.get(k) != identity.get(k) for k in keys)


def build(
    roots: Iterable[str | Path],
    settings: Settings,
    *,
    reindex: bool = False,
    retry_failed: bool = False,
    progress: ProgressFn | None = None,
    encoder: Any = None,
    prune: bool = False,
) -> BuildSummary:
    """Index `roots` into `settings.index` and return the summary; files the scan could not
    see, or too many gone at once, stay indexed (summary.warnings) unless `prune`.

    Raises SettingsError (an option out of range, before anything is touched), BuildError (bad
    roots, other encoder), IndexBusyError (another writer), or, on Ctrl-C or SIGTERM,
    `interrupts.Interrupted` with the summary as `.result` once the work is saved.
    """
    settings.validate()
    roots = [os.path.abspath(os.path.expanduser(os.fspath(r))) for r in roots]
    if typo := unknown_root(settings.index, roots):  # not an unmounted drive
        raise BuildError(f"{typo}: no such file or folder")
    report = progress or (lambda *a, **k: None)
    started = time.time()
    with open_for_build(settings.index) as catalog:
        build_run = _Build(catalog, roots, settings, reindex, retry_failed, report, prune)
        return build_run.run(encoder, started)


class _Build:
    def __init__(
        self,
        catalog: Catalog,
        roots: list[str],
        settings: Settings,
        reindex: bool,
        retry_failed: bool,
        report: ProgressFn,
        prune: bool = False,
    ) -> None:
        self.cat = catalog
        self.roots = roots
        self.settings = settings
        self.reindex = reindex
        self.retry_failed = retry_failed
        self.report = report
        self.summary = BuildSummary(index=str(settings.index.absolute()))
        self.guard = VanishGuard(roots, prune, self.summary.warnings)
        self.writes = CatalogWrites(self.summary, retry_failed)
        self._reembed_entries: dict[str, list[fs.FileEntry]] = {}
        self._embed_clock: dict[str, float] = {}

    # ------------------------------------------------------------------ the run
    def run(self, encoder: Any, started: float) -> BuildSummary:
        clock = Laps(self.summary.stages)
        if encoder is None:
            encoder = self._load_encoder()
            clock.lap("load_encoder")
        self._pin_encoder(encoder)
        with self.cat.session() as s:  # we hold the lock: a "running" run was killed
            s.execute(update(Run).where(Run.status == "running").values(status="killed"))
            run_row = Run(started_at=started, status="running")
            s.add(run_row)
        try:
            return self._steps(encoder, clock, run_row.id, started)
        except Exception as exc:  # the run row says it failed, not "running" forever
            with contextlib.suppress(Exception):  # e.g. the disk is full: the error says so
                with self.cat.session() as session:
                    row = session.get(Run, run_row.id)
                    row.finished_at, row.status = time.time(), "failed"
                    row.summary = json.dumps({"error": str(exc)})
            raise

    def _steps(self, encoder: Any, clock: Laps, run_id: int, started: float) -> BuildSummary:
        """Scan, plan, embed, sync FAISS, record the run; Ctrl-C/SIGTERM stop it cleanly."""
        gen_at_start = self.cat.generation()
        try:  # scan, plan, embed: each step commits as it goes
            if refresh_phashes(self.cat, self.settings):  # an index made by an older version
                clock.lap("phash_refresh")
            scan = fs.scan(self.roots, excludes=self.settings.excludes, never=[self.settings.index])
            self.report("scan", found=len(scan.images))
            self.summary.skipped = scan.skipped
            self.summary.skipped_kinds = dict(scan.skipped_kinds)
            clock.lap("scan")
            pending, reembed = self._plan(scan)
            clock.lap("plan")
            self._embed(encoder, pending, reembed)
            clock.lap("embed")
            self.summary.stages.update(self._embed_clock)
        except KeyboardInterrupt as exc:  # stop; keep what is committed, save FAISS to match
            clock.lap("interrupted")  # the stage that was cut short
            self.summary.interrupted = signal.Signals(signum_of(exc)).name
        info = sync.sync_index(
            self.cat,
            self.settings,
            added=self.writes.added,
            removed=self.writes.removed,
            generation_at_start=gen_at_start,
        )
        clock.lap("index")
        s = self.summary
        counts = self.cat.counts()
        s.images, s.vectors, s.ledger = counts["images"], counts["vectors"], counts["failures"]
        s.index_type, s.nlist, s.nprobe = info["index_type"], info["nlist"], info["nprobe"]
        s.recall_at_10, s.search_ms = info["recall_at_10"], info["search_ms"]
        s.seconds = round(time.time() - started, 3)
        s.images_per_second = round(s.embedded / s.seconds, 2) if s.seconds else 0.0
        with self.cat.session() as session:
            row = session.get(Run, run_id)
            row.finished_at, row.status = time.time(), "interrupted" if s.interrupted else "done"
            row.summary = json.dumps(s.as_dict())
            Catalog.set_meta(session, "last_build", s.as_dict())
        if s.interrupted:
            raise Interrupted(signal.Signals[s.interrupted], result=s)
        return s

    def _load_encoder(self) -> Any:
        from indexer.encoder import load_encoder

        weights = self.settings.weights or self.cat.get_meta("weights_path")
        return load_encoder(
            weights,
            device=self.settings.device,
            dtype=self.settings.dtype,
            cache_dir=self.settings.cache_dir,
            replicate=True,
            compile=self.settings.compile,
        )

    def _pin_encoder(self, encoder: Any) -> None:
        identity = dict(encoder.identity)
        pinned = self.cat.get_meta("encoder")
        if encoder_identity_changed(pinned, identity):
            if not self.reindex:
                raise BuildError(
                    f"{self.settings.index}: this index was built with encoder "
                    f"{pinned.get('architecture')} (weights {pinned.get('weights_sha256', '')[:12]}"
                    f"), not {identity.get('architecture')} (weights "
                    f"{identity.get('weights_sha256', '')[:12]}); pass the original --weights, "
                    "or add --reindex to re-embed everything with the new encoder"
                )
            with self.cat.session() as s:
                ids = s.scalars(select(Content.id).where(Content.vector.is_not(None))).all()
                self.writes.removed.update(ids)
                s.execute(update(Content).values(vector=None, embedded_at=None))
                Catalog.bump_generation(s)
        with self.cat.session() as s:
            Catalog.set_meta(s, "encoder", identity)
            Catalog.set_meta(s, "dim", int(identity["dim"]))
            if self.settings.weights:
                Catalog.set_meta(s, "weights_path", str(Path(self.settings.weights).absolute()))

    # ------------------------------------------------------------------ planning
    def _plan(self, scan: fs.ScanResult) -> tuple[dict[str, list[fs.FileEntry]], dict[str, int]]:
        """Sort scanned files; commit links, deletions and ledger entries; return what to embed.

        Returns (pending: hash (or, for a file hashed while decoding, its path) → entries
        needing a new content, reembed: hash → content id of unchanged files whose content
        lost its vector, e.g. after --reindex).
        """
        s = self.summary
        with self.cat.session() as session:
            buried_sizes = self.writes.bury_pathless(session)
            rows = session.execute(
                select(File.path, File.size, File.mtime_ns, File.content_id, Content.hash)
                .join(Content, Content.id == File.content_id)
                .add_columns(Content.vector.is_not(None))
            ).all()
            failed_known = {f.path: (f.size, f.mtime_ns) for f in session.scalars(select(Failure))}
        existing = {r[0]: r for r in rows if fs.under_roots(r[0], self.roots)}
        scanned_images = {e.path for e in scan.images}
        to_hash: list[fs.FileEntry] = []
        reembed: dict[str, int] = {}
        reembed_entries: dict[str, list[fs.FileEntry]] = defaultdict(list)
        for entry in scan.images:
            row = existing.get(entry.path)
            if row is not None and row[1] == entry.size and row[2] == entry.mtime_ns:
                if row[5]:
                    s.unchanged += 1
                else:
                    reembed[row[4]] = row[3]
                    reembed_entries[row[4]].append(entry)
                continue
            if not self.retry_failed and failed_known.get(entry.path) == (
                entry.size,
                entry.mtime_ns,
            ):
                continue  # failed before, unchanged: stays in the ledger, not tried again
            to_hash.append(entry)
        deleted_paths = [p for p in existing if p not in scanned_images]
        deleted_paths = self.guard.hold_unseen(scan, deleted_paths)
        old_content = {p: existing[p][3] for p in deleted_paths}
        with self.cat.session() as session:
            for entry, reason in scan.not_images:
                self.writes.ledger_once(session, entry, "scan", reason, failed_known)
            for path, reason in scan.errors:
                self.writes.ledger_once(
                    session, fs.FileEntry(path, 0, 0), "scan", reason, failed_known
                )
            # ledger entries of files that are gone from the scanned folders
            seen = scanned_images | {e.path for e, _ in scan.not_images}
            seen |= {p for p, _ in scan.errors}
            gone = [p for p in failed_known if p not in seen and fs.under_roots(p, self.roots)]
            gone = self.guard.seen_gone(scan, gone)  # not those behind an unseen folder
            for chunk in chunked(gone):
                session.execute(delete(Failure).where(Failure.path.in_(chunk)))

        # A file whose size no indexed file and no other new file has cannot be a copy or a
        # move: the decode worker hashes it from the bytes it decodes (read once, not twice).
        sizes = Counter(e.size for e in to_hash)
        indexed_sizes = {r[1] for r in rows} | buried_sizes  # a tombstone may come back
        one_read = [e for e in to_hash if sizes[e.size] == 1 and e.size not in indexed_sizes]
        to_hash = [e for e in to_hash if sizes[e.size] > 1 or e.size in indexed_sizes]
        hashed: list[tuple[fs.FileEntry, str]] = []
        with self.cat.session() as session:
            for entry, digest, error in fs.hash_files(to_hash):
                if error:
                    self.writes.fail(session, entry, "read", error)
                else:
                    hashed.append((entry, digest))
        known = self._contents_by_hash({d for _, d in hashed})
        gone_by_content: dict[int, int] = defaultdict(int)
        for p in deleted_paths:
            gone_by_content[old_content[p]] += 1
        pending: dict[str, list[fs.FileEntry]] = defaultdict(list)
        for entry in one_read:  # keyed by path: the worker returns the hash
            pending[entry.path].append(entry)
            if entry.path in existing:
                s.changed += 1
            else:
                s.new += 1
        links: list[tuple[fs.FileEntry, int]] = []
        for entry, digest in hashed:
            was_indexed = entry.path in existing
            content = known.get(digest)
            if content is not None and content[1]:
                links.append((entry, content[0]))
                if was_indexed:
                    s.changed += 1
                elif gone_by_content[content[0]] > 0:
                    gone_by_content[content[0]] -= 1
                    s.moved += 1
                else:
                    s.new += 1
            else:
                if content is not None:  # known content without vector (reindex)
                    reembed[digest] = content[0]
                    reembed_entries[digest].append(entry)
                else:
                    pending[digest].append(entry)
                if was_indexed:
                    s.changed += 1
                else:
                    s.new += 1
        deleted_paths = self.guard.hold_mass(deleted_paths, old_content, gone_by_content, existing)
        s.deleted = len(deleted_paths) - s.moved
        # Changed paths that link to other content drop their old content if orphaned.
        for entry, _ in links:
            if entry.path in existing:
                old_content[entry.path] = existing[entry.path][3]
        with self.cat.session() as session:
            for chunk in chunked(deleted_paths):
                session.execute(delete(File).where(File.path.in_(chunk)))
            self.writes.link(session, links)
            self.writes.drop_orphans(session, set(old_content.values()))
            self.writes.expire(session, self.settings.tombstone_days)
        self._reembed_entries = reembed_entries
        return pending, reembed

    def _contents_by_hash(self, digests: set[str]) -> dict[str, tuple[int, bool]]:
        found: dict[str, tuple[int, bool]] = {}
        items = list(digests)
        with self.cat.session() as session:
            for chunk in chunked(items):
                for cid, digest, has_vec in session.execute(
                    select(Content.id, Content.hash, Content.vector.is_not(None)).where(
                        Content.hash.in_(chunk)
                    )
                ):
                    found[digest] = (cid, bool(has_vec))
        return found

    # ------------------------------------------------------------------ embedding
    def _embed(
        self,
        encoder: Any,
        pending: dict[str, list[fs.FileEntry]],
        reembed: dict[str, int],
    ) -> None:
        entries = dict(pending)
        entries.update(self._reembed_entries)
        jobs = [  # a key that is the path itself: the worker hashes the bytes it decodes
            DecodeJob(key, e[0].path, e[0].size, e[0].mtime_ns, hash=key == e[0].path)
            for key, e in entries.items()
        ]
        self.report("embed-start", total=len(jobs))
        self.summary.to_embed = len(jobs)
        done, writing = 0, 0.0
        clock: dict[str, float] = {}
        with contextlib.closing(self._stream(encoder, jobs, clock)) as stream:
            for batch in stream:  # closing(): an interrupt stops the workers and encoder threads
                start = time.perf_counter()
                with deferred(), self.cat.session() as session:  # a signal waits for the commit
                    self.writes.store_batch(session, batch, entries, reembed)
                writing += time.perf_counter() - start
                done += len(batch.decoded.keys) + len(batch.decoded.failed)
                self.report("embed", done=done, failed=self.summary.failed)
        if jobs:
            clock["catalog_writes"] = writing
            self._embed_clock = {k: round(v, 3) for k, v in clock.items()}

    def _stream(
        self, encoder: Any, jobs: list[DecodeJob], clock: dict[str, float]
    ) -> Iterator[EncodedBatch]:
        """Decoded + encoded batches from the chosen engine (local processes or Ray)."""
        st = self.settings
        if st.engine == "ray":
            from indexer.ray_engine import encode_batches_ray

            return encode_batches_ray(
                jobs,
                weights=str(encoder.weights_path),
                device=st.device,
                dtype=encoder.dtype,
                batch_size=st.batch_size,
                actors=st.ray_actors,
                max_megapixels=st.max_megapixels,
                timeout=st.decode_timeout,
                address=st.ray_address,
                max_decode_mb=st.max_decode_mb,
            )
        return encode_batches(
            encoder,
            jobs,
            batch_size=st.batch_size,
            workers=min(st.resolved_workers, max(1, len(jobs) // 4)),
            max_megapixels=st.max_megapixels,
            timeout=st.decode_timeout,
            clock=clock,
            max_decode_mb=st.max_decode_mb,
        )
