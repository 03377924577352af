"""Keep the FAISS file in step with the catalog, and open it for readers.

The catalog is the truth and counts its changes (`generation`); the FAISS file records the
generation it reflects. A file that lags (a crash between commit and save) is rebuilt from the
stored vectors, never by re-embedding. Whatever touches every vector streams from the catalog.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexFileError
from indexer.settings import Settings
from indexer.store import exact, index_choice, vectors
from indexer.store.catalog import Catalog, chunked

INDEX_FILE = "vectors.faiss"
# fills a new IVF index with (ids, vectors) in its own way, e.g. in shards on a cluster
BuildIvf = Callable[[vectors.VectorIndex, np.ndarray, np.ndarray], None]
TUNE_QUERIES = 500
RETUNE_GROWTH = 0.10  # an incremental build retunes nprobe once the index changed by 10 %
SAMPLE_BATCH = 5_000
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
    state = {} if rebuild else _state(path, cat)  # decided from it: KEEP reads no list
    step = _decide(state, now, n, generation_at_start, settings.target_recall)
    if step == KEEP:
        return {key: state[key] for key in INFO_KEYS}
    index, state = _load(path, cat) if step != REBUILD else (None, {})
    started = time.perf_counter()
    if step == APPLY and index is not None:
        _apply(cat, index, added or set(), removed or set())
    elif step == REBUILD or index is None:
        index = _rebuild(cat, settings, now["dim"], build_ivf)
    seconds = time.perf_counter() - started
    if step == APPLY and not _outgrew_tuning(index, state, settings.target_recall):
        info = {**{k: state[k] for k in INFO_KEYS}, "vectors": index.ntotal}
        info["build_seconds"] = round(seconds, 3)
    else:
        info = _tune(cat, index, settings.target_recall, seconds)
    state = {**now, "target_recall": settings.target_recall, **info}
    index.save(path, state)
    with cat.session() as s:
        Catalog.set_meta(s, "index", info)
    return info


KEEP, RETUNE, APPLY, REBUILD = "keep", "retune", "apply", "rebuild"
INFO_KEYS = ("index_type", "nlist", "nprobe", "recall_at_10", "search_ms", "vectors")
INFO_KEYS += ("build_seconds", "tuned_for")  # tuned_for: ntotal when nprobe was last tuned


def _decide(
    state: dict[str, Any],
    now: dict[str, int],
    n: int,
    generation_at_start: int | None,
    target_recall: float,
) -> str:
    """KEEP the saved file, RETUNE it (same vectors, other target), APPLY this run's changes
    to it, or REBUILD it from the catalog: from its state alone."""
    if not state or state.get("dim") != max(now["dim"], 1):
        return REBUILD
    spec = vectors.IndexSpec(**state["spec"])
    if vectors.outgrown(spec, state.get("trained_for", 0), n):
        return REBUILD
    if state.get("generation") == now["generation"]:
        tuned = state.get("target_recall") == target_recall and set(INFO_KEYS) <= set(state)
        return KEEP if tuned else RETUNE
    at_start = generation_at_start is not None and state.get("generation") == generation_at_start
    return APPLY if at_start else REBUILD


def _outgrew_tuning(index: vectors.VectorIndex, state: dict[str, Any], target: float) -> bool:
    """Whether nprobe must be tuned again: another target, or the index changed size by more
    than RETUNE_GROWTH since it was tuned (or the state predates held-out tuning)."""
    tuned_for = state.get("tuned_for")
    if state.get("target_recall") != target or not tuned_for or not set(INFO_KEYS) <= set(state):
        return True
    return abs(index.ntotal - tuned_for) > RETUNE_GROWTH * tuned_for


def _state(path: Path, cat: Catalog) -> dict[str, Any]:
    """The saved file's state once the file is checked and FAISS has parsed it memory-mapped
    (its lists are not read: the same cost at any size), or {} when missing or unusable."""
    try:
        return vectors.load(path, cat.expected_index(), mmap=True)[1]
    except FileNotFoundError:
        return {}
    except vectors.IndexFileError as exc:
        log.warning("%s; rebuilding it from the catalog", exc)
        return {}


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
    for chunk in chunked(sorted(added), SAMPLE_BATCH):
        ids, vecs = cat.vectors_for(chunk)
        if len(ids):
            index.add(ids, vecs)


def _rebuild(
    cat: Catalog, settings: Settings, dim: int, build_ivf: BuildIvf | None
) -> vectors.VectorIndex:
    """A new index of every stored vector, of the kind their number and the memory budget
    call for, trained on a sample and filled batch by batch from the catalog."""
    n, dim = cat.counts()["vectors"], max(dim, 1)
    budget = settings.memory_budget_mb or index_choice.default_budget_mb()
    index = vectors.VectorIndex.create(vectors.choose_spec(n, dim, budget), dim=dim)
    if n and build_ivf is not None and index.is_ivf:  # Ray ships shards: all vectors at once
        build_ivf(index, *cat.all_vectors())
    elif n:
        take = vectors.train_size(n, index.spec.nlist or 0) if index.is_ivf else 0
        index.fill(cat.vectors, _sample(cat, take, dim))
    return index


def _sample(cat: Catalog, size: int, dim: int) -> np.ndarray:
    """`size` random stored vectors (float32), read by id in batches into one array."""
    ids = cat.sample_ids(size)
    out = np.zeros((len(ids), dim), np.float32)
    filled = 0
    for chunk in chunked(ids, SAMPLE_BATCH):
        _, vecs = cat.vectors_for(chunk)
        out[filled : filled + len(vecs)] = vecs
        filled += len(vecs)
    return out[:filled]


def _tune(
    cat: Catalog, index: vectors.VectorIndex, target_recall: float, build_seconds: float
) -> dict[str, Any]:
    """Tune nprobe on held-out queries: TUNE_QUERIES stored vectors are taken out of the index,
    searched against their exact neighbours among all the others, and put back."""
    held, queries = cat.vectors_for(cat.sample_ids(TUNE_QUERIES))
    if index.spec.approximate:
        index.exact = cat.vectors_for
    tune = index.tune_nprobe(queries) if len(held) and not index.is_ivf else None  # exact
    if len(held) and index.is_ivf:
        index.remove(held)
        truth = exact.neighbours(queries, cat.vectors(), 10, exclude=held)
        tune = index.tune_nprobe(queries, target_recall=target_recall, k=10, truth=truth)
        index.add(held, queries)
    return {
        "index_type": index.spec.description,
        "nlist": index.spec.nlist,
        "nprobe": tune.nprobe if tune else index.nprobe,
        "recall_at_10": round(tune.recall_at_10, 4) if tune else None,
        "search_ms": round(tune.ms_per_query, 4) if tune else None,
        "vectors": index.ntotal,
        "build_seconds": round(build_seconds, 3),
        "tuned_for": index.ntotal,
    }


def open_index(cat: Catalog, index_dir: str | Path) -> tuple[Any, bool]:
    """For readers: the saved FAISS index, memory-mapped (pages load as searches touch them),
    or an exact one streamed from the catalog when the file is missing or unusable.

    Returns (index, lagging) where `lagging` says the catalog has changed since the save
    (a build is running or was killed): hits are still filtered against the catalog.
    """
    path = index_path(index_dir)
    try:
        index, state = vectors.load(path, cat.expected_index(), mmap=True)
    except (FileNotFoundError, vectors.IndexFileError) as exc:
        if isinstance(exc, vectors.IndexFileError):
            log.warning(
                "%s; searching the catalog's vectors exactly until `index build` or "
                "`index verify --repair` rewrites it",
                exc,
            )
        return _exact_from_catalog(cat), True
    if index.spec.approximate:
        index.exact = cat.vectors_for
    return index, state.get("generation") != cat.generation()


def _exact_from_catalog(cat: Catalog) -> vectors.VectorIndex:
    """An exact index of every stored vector, added batch by batch; refused (IndexFileError)
    when it would not fit the default memory budget: then the FAISS file must be rebuilt."""
    n, dim = cat.counts()["vectors"], int(cat.get_meta("dim", 1)) or 1
    spec = vectors.choose_spec(0, dim)
    if index_choice.build_bytes(spec, n, dim) > index_choice.default_budget_mb() * 1e6:
        raise IndexFileError(
            f"{index_path(cat.index_dir)} is missing or damaged and {n} vectors are too many to "
            "search without it: run `index build` (or `index verify --repair`) to rebuild it"
        )
    index = vectors.VectorIndex.create(spec, dim=dim)
    for ids, vecs in cat.vectors():
        index.add(ids, vecs)
    return index
