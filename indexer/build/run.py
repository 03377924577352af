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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from indexer import files as fs
from indexer import imaging
from indexer.build import plan
from indexer.build.ingest import CatalogWrites
from indexer.build.pipeline import DecodeJob, EncodedBatch, encode_batches
from indexer.build.rehash import refresh_phashes
from indexer.build.summary import BuildSummary
from indexer.build.vanished import VanishGuard, unknown_root
from indexer.clock import Laps
from indexer.errors import BuildError
from indexer.interrupts import Interrupted, deferred, signum_of
from indexer.pins import check_content_hash, encoder_identity_changed
from indexer.settings import Settings
from indexer.store import sync
from indexer.store.catalog import Catalog, Content, Failure, File, Run, chunked
from indexer.store.home import open_for_build

# progress(event, **fields): "scan" (found=), "embed-start" (total=), "embed" (done=, failed=),
# "decoder-warning" (path=, notes=: the decoder's words about a picture it still decoded)
ProgressFn = Callable[..., None]


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
    roots, other encoder), IndexBusyError (another writer), RayUnavailableError (a named Ray
    cluster that cannot be reached, before anything is touched), or, on Ctrl-C or SIGTERM,
    `interrupts.Interrupted` with the summary as `.result` once the work is saved.
    """
    settings.validate()
    if settings.engine == "ray" and settings.ray_address:  # a named cluster: reach it first
        from indexer.build.ray_engine import connect

        connect(settings.ray_address)
    roots = [os.path.abspath(os.path.expanduser(os.fspath(r))) for r in roots]
    if typo := unknown_root(settings.index, roots):  # not an unmounted drive
        raise BuildError(f"{typo}: no such file or folder")
    report = progress or (lambda *a, **k: None)
    started = time.time()
    with open_for_build(settings.index) as catalog:
        build_run = _Build(catalog, roots, settings, reindex, retry_failed, report, prune)
        return build_run.run(encoder, started)


def load_build_encoder(settings: Settings, pinned_weights: str | None = None) -> Any:
    """The encoder a build on `settings` loads: --weights, else the index's own
    (`pinned_weights`, meta `weights_path`), else the default; `index watch` loads it once."""
    from indexer.encoder import load_encoder

    return load_encoder(
        settings.weights or pinned_weights,
        device=settings.device,
        dtype=settings.dtype,
        cache_dir=settings.cache_dir,
        replicate=True,
        compile=settings.compile,
    )


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
        self.writes = CatalogWrites(self.summary)
        self._embed_clock: dict[str, float] = {}

    # ------------------------------------------------------------------ the run
    def run(self, encoder: Any, started: float) -> BuildSummary:
        clock = Laps(self.summary.stages)
        if encoder is None:
            encoder = self._load_encoder()
            clock.lap("load_encoder")
        self._pin_encoder(encoder)
        with self.cat.session() as session:  # we hold the lock: a "running" run was killed
            session.execute(update(Run).where(Run.status == "running").values(status="killed"))
            run_row = Run(started_at=started, status="running")
            session.add(run_row)
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
            scan = fs.scan(
                self.roots,
                excludes=self.settings.excludes,
                never=[self.settings.index],
                max_file_mb=self.settings.max_file_mb,
            )
            self.report("scan", found=len(scan.images))
            self.summary.skipped = scan.skipped
            self.summary.skipped_kinds = dict(scan.skipped_kinds)
            clock.lap("scan")
            build_plan = self._plan(scan)
            clock.lap("plan")
            self._embed(encoder, build_plan)
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
            build_ivf=self._ivf_builder(),
        )
        clock.lap("index")
        done = self.summary
        counts = self.cat.counts()
        done.images, done.vectors, done.ledger = (
            counts["images"],
            counts["vectors"],
            counts["failures"],
        )
        done.index_type, done.nlist, done.nprobe = info["index_type"], info["nlist"], info["nprobe"]
        done.recall_at_10, done.search_ms = info["recall_at_10"], info["search_ms"]
        done.seconds = round(time.time() - started, 3)
        done.images_per_second = round(done.embedded / done.seconds, 2) if done.seconds else 0.0
        with self.cat.session() as session:
            row = session.get(Run, run_id)
            row.finished_at, row.status = time.time(), "interrupted" if done.interrupted else "done"
            row.summary = json.dumps(done.as_dict())
            Catalog.set_meta(session, "last_build", done.as_dict())
        if done.interrupted:
            raise Interrupted(signal.Signals[done.interrupted], result=done)
        return done

    def _ivf_builder(self) -> sync.BuildIvf | None:
        """On Ray, a new IVF index is filled in shards over the cluster."""
        if self.settings.engine != "ray":
            return None
        from indexer.build.ray_engine import build_ivf_on_ray

        return build_ivf_on_ray

    def _load_encoder(self) -> Any:
        return load_build_encoder(self.settings, self.cat.get_meta("weights_path"))

    def _pin_encoder(self, encoder: Any) -> None:
        check_content_hash(self.cat.get_meta("content_hash"), fs.HASH_NAME, self.settings.index)
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
            with self.cat.session() as session:
                ids = session.scalars(select(Content.id).where(Content.vector.is_not(None))).all()
                self.writes.removed.update(ids)
                session.execute(update(Content).values(vector=None, embedded_at=None))
                Catalog.bump_generation(session)
        with self.cat.session() as session:
            Catalog.set_meta(session, "content_hash", fs.HASH_NAME)
            Catalog.set_meta(session, "encoder", identity)
            Catalog.set_meta(session, "dim", int(identity["dim"]))
            if self.settings.weights:
                weights = str(Path(self.settings.weights).absolute())
                Catalog.set_meta(session, "weights_path", weights)

    # ------------------------------------------------------------------ planning
    def _plan(self, scan: fs.ScanResult) -> plan.Plan:
        """Plan against the catalog (hashing the files that may be copies or moves), write
        the plan's links, deletions and ledger entries in one transaction; returns it."""
        with self.cat.session() as session:
            tombstone_sizes = self.writes.bury_pathless(session)
            rows = [plan.IndexedFile(*row) for row in session.execute(
                select(File.path, File.size, File.mtime_ns, File.content_id, Content.hash)
                .join(Content, Content.id == File.content_id)
                .add_columns(Content.vector.is_not(None))
            )]  # fmt: skip
            failed_known = {f.path: (f.size, f.mtime_ns) for f in session.scalars(select(Failure))}
        draft = plan.classify(
            scan,
            rows,
            failed_known,
            roots=self.roots,
            tombstone_sizes=tombstone_sizes,
            retry_failed=self.retry_failed,
            guard=self.guard,
        )
        hashed: list[tuple[fs.FileEntry, str]] = []
        unread: list[plan.NewFailure] = []
        for entry, digest, error in fs.hash_files(draft.to_hash):
            if error:
                unread.append(plan.NewFailure(entry, "read", error))
            else:
                hashed.append((entry, digest))
        known = self._contents_by_hash({d for _, d in hashed})
        build_plan = plan.resolve(draft, hashed, unread, known, self.guard)
        for name, value in asdict(build_plan.counts).items():
            setattr(self.summary, name, value)
        with self.cat.session() as session:
            self.writes.apply(session, build_plan, self.settings.tombstone_days)
        return build_plan

    def _contents_by_hash(self, digests: set[str]) -> dict[str, plan.KnownContent]:
        found: dict[str, plan.KnownContent] = {}
        items = list(digests)
        with self.cat.session() as session:
            for chunk in chunked(items):
                for cid, digest, has_vec in session.execute(
                    select(Content.id, Content.hash, Content.vector.is_not(None)).where(
                        Content.hash.in_(chunk)
                    )
                ):
                    found[digest] = plan.KnownContent(cid, bool(has_vec))
        return found

    # ------------------------------------------------------------------ embedding
    def _embed(self, encoder: Any, build_plan: plan.Plan) -> None:
        entries = {job.key: files for job, files in build_plan.embed.items()}
        reembed = build_plan.reembed
        jobs = [  # no hash yet: the worker hashes the bytes it decodes
            DecodeJob(
                job.key, job.path, e[0].size, e[0].mtime_ns, hash_while_decoding=job.hash is None
            )
            for job, e in build_plan.embed.items()
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
                for path, notes in batch.decoded.notes:  # indexed, but its decoder warned
                    self.summary.decoder_warnings += 1
                    self.report("decoder-warning", path=path, notes=notes)
                self.report("embed", done=done, failed=self.summary.failed)
        if jobs:
            clock["catalog_writes"] = writing
            self._embed_clock = {k: round(v, 3) for k, v in clock.items()}

    def _stream(
        self, encoder: Any, jobs: list[DecodeJob], clock: dict[str, float]
    ) -> Iterator[EncodedBatch]:
        """Decoded + encoded batches from the chosen engine (local processes or Ray)."""
        st = self.settings
        options = imaging.DecodeOptions.from_settings(st, draft=True)
        if st.engine == "ray":
            from indexer.build.ray_engine import encode_batches_ray

            return encode_batches_ray(
                jobs,
                weights=str(encoder.weights_path),
                device=st.device,
                dtype=encoder.dtype,
                batch_size=st.batch_size,
                actors=st.ray_actors,
                options=options,
                address=st.ray_address,
            )
        return encode_batches(
            encoder,
            jobs,
            batch_size=st.batch_size,
            workers=min(st.resolved_workers, max(1, len(jobs) // 4)),
            options=options,
            clock=clock,
        )
