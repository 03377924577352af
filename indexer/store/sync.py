"""Keep the FAISS file in step with the catalog, and open it for readers.

The catalog is the truth and counts its changes (`generation`); the FAISS file records the
generation it reflects. A file that lags (a crash between commit and save) is rebuilt from the
stored vectors, never by re-embedding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from indexer.settings import Settings
from indexer.store import vectors
from indexer.store.catalog import Catalog

INDEX_FILE = "vectors.faiss"
# fills a new IVF index with (ids, vectors) in its own way, e.g. in shards on a cluster
BuildIvf = Callable[[vectors.VectorIndex, np.ndarray, np.ndarray], None]
TUNE_QUERIES = 500
log = logging.getLogger(__name__)


def index_path(index_dir: str | Path) -> Path:
    return Path(index_dir) / INDEX_FILE


def sync_index(
    cat: Catalog,
    settings: Settings,
    *,
    added: set[int] | None = None,
    removed: set[int] | None = None,
    generation_at_start: int | None = None,
    rebuild: bool = False,
    build_ivf: BuildIvf | None = None,
) -> dict[str, Any]:
    """Bring the FAISS file up to the catalog's generation, tune nprobe, save atomically.

    Decides first: a file already at the catalog's generation, tuned for the same target, is
    left as it is (no write, no tuning). Applies `removed`/`added` incrementally when the file
    is exactly the state at the start of the run; otherwise (missing, corrupt, lagging,
    outgrown) rebuilds from SQLite, an IVF index with `build_ivf` when given (Ray's shards).
    """
    path = index_path(settings.index)
    now = {"generation": cat.generation(), "dim": int(cat.get_meta("dim", 0))}
    n = cat.counts()["vectors"]
    index, state = (None, {}) if rebuild else _load(path, cat)
    step = _decide(index, state, now, n, generation_at_start, settings.target_recall)
    if step == KEEP:
        return {key: state[key] for key in INFO_KEYS}
    started = time.perf_counter()
    if step == APPLY and index is not None:
        _apply(cat, index, added or set(), removed or set())
    elif step == REBUILD or index is None:
        index = _rebuild(cat, settings, now["dim"], build_ivf)
    info = _tune(cat, index, settings.target_recall, time.perf_counter() - started)
    state = {**now, "target_recall": settings.target_recall, **info}
    index.save(path, state)
    with cat.session() as s:
        Catalog.set_meta(s, "index", info)
    return info


KEEP, RETUNE, APPLY, REBUILD = "keep", "retune", "apply", "rebuild"
INFO_KEYS = ("index_type", "nlist", "nprobe", "recall_at_10", "search_ms", "vectors")
INFO_KEYS += ("build_seconds",)


def _decide(
    index: vectors.VectorIndex | None,
    state: dict[str, Any],
    now: dict[str, int],
    n: int,
    generation_at_start: int | None,
    target_recall: float,
) -> str:
    """KEEP the saved file, RETUNE it (same vectors, other target), APPLY this run's changes
    to it, or REBUILD it from the catalog."""
    if index is None or index.needs_retrain(n) or index.dim != max(now["dim"], 1):
        return REBUILD
    if state.get("generation") == now["generation"]:
        tuned = state.get("target_recall") == target_recall and set(INFO_KEYS) <= set(state)
        return KEEP if tuned else RETUNE
    at_start = generation_at_start is not None and state.get("generation") == generation_at_start
    return APPLY if at_start else REBUILD


def _load(path: Path, cat: Catalog) -> tuple[vectors.VectorIndex | None, dict[str, Any]]:
    """The saved index and its state, or (None, {}) when missing or unusable (a `note:`)."""
    try:
        return vectors.load(path, cat.expected_index())
    except FileNotFoundError:
        return None, {}
    except vectors.IndexFileError as exc:
        log.warning("%s; rebuilding it from the catalog", exc)
        return None, {}


def _apply(cat: Catalog, index: vectors.VectorIndex, added: set[int], removed: set[int]) -> None:
    """This run's removed and added contents, into the index as it was at the start."""
    if removed:
        index.remove(sorted(removed))
    if added:
        ids, vecs = cat.vectors_for(added)
        if len(ids):
            index.add(ids, vecs)


def _rebuild(
    cat: Catalog, settings: Settings, dim: int, build_ivf: BuildIvf | None
) -> vectors.VectorIndex:
    """A new index of every stored vector, of the kind their number calls for."""
    ids, vecs = cat.all_vectors()
    index = vectors.VectorIndex.create(
        vectors.choose_spec(len(ids), dim or vecs.shape[1], settings.memory_budget_mb)
        if len(ids)
        else vectors.choose_spec(0, max(dim, 1), settings.memory_budget_mb),
        dim=max(dim, 1),
    )
    if len(ids) and build_ivf is not None and index.is_ivf:
        build_ivf(index, ids, vecs)
    elif len(ids):
        index.build(ids, vecs)
    return index


def _tune(
    cat: Catalog, index: vectors.VectorIndex, target_recall: float, build_seconds: float
) -> dict[str, Any]:
    """Tune nprobe on a sample of stored vectors; the index's info (meta "index")."""
    sample_ids = cat.sample_ids(TUNE_QUERIES)
    tune = None
    if sample_ids:
        _, queries = cat.vectors_for(sample_ids)
        tune = index.tune_nprobe(queries, target_recall=target_recall, k=10)
    return {
        "index_type": index.spec.description,
        "nlist": index.spec.nlist,
        "nprobe": tune.nprobe if tune else index.nprobe,
        "recall_at_10": round(tune.recall_at_10, 4) if tune else None,
        "search_ms": round(tune.ms_per_query, 4) if tune else None,
        "vectors": index.ntotal,
        "build_seconds": round(build_seconds, 3),
    }


def open_index(cat: Catalog, index_dir: str | Path) -> tuple[Any, bool]:
    """For readers: the saved FAISS index, or an exact one made from the catalog if missing.

    Returns (index, lagging) where `lagging` says the catalog has changed since the save
    (a build is running or was killed): hits are still filtered against the catalog.
    """
    path = index_path(index_dir)
    try:
        index, state = vectors.load(path, cat.expected_index())
        return index, state.get("generation") != cat.generation()
    except (FileNotFoundError, vectors.IndexFileError) as exc:
        if isinstance(exc, vectors.IndexFileError):
            log.warning(
                "%s; searching the catalog's vectors exactly until `index build` or "
                "`index verify --repair` rewrites it",
                exc,
            )
        ids, vecs = cat.all_vectors()
        dim = vecs.shape[1] if vecs.ndim == 2 and vecs.shape[1] else int(cat.get_meta("dim", 1))
        index = vectors.VectorIndex.create(vectors.choose_spec(0, dim), dim=dim)
        if len(ids):
            index.build(ids, vecs)
        return index, True
