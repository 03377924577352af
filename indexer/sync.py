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

from indexer import vectors
from indexer.catalog import Catalog
from indexer.settings import Settings

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

    Applies `removed`/`added` incrementally when the file on disk is exactly the state at the
    start of the run; otherwise (missing, corrupt, lagging, outgrown) rebuilds from SQLite,
    an IVF index with `build_ivf` when given (the build on Ray passes its sharded fill).
    """
    path = index_path(settings.index)
    generation = cat.generation()
    dim = int(cat.get_meta("dim", 0))
    n = cat.counts()["vectors"]
    index = None
    state: dict[str, Any] = {}
    if not rebuild:
        try:
            index, state = vectors.load(path)
        except FileNotFoundError:
            index = None
        except vectors.IndexFileError as exc:
            log.warning("%s; rebuilding it from the catalog", exc)
            index = None
    up_to_date = index is not None and state.get("generation") == generation
    incremental = (
        index is not None
        and not up_to_date
        and generation_at_start is not None
        and state.get("generation") == generation_at_start
        and state.get("dim") == dim
        and not index.needs_retrain(n)
    )
    started = time.perf_counter()
    if up_to_date and index is not None and not index.needs_retrain(n):
        pass
    elif incremental and index is not None:
        if removed:
            index.remove(sorted(removed))
        if added:
            ids, vecs = cat.vectors_for(added)
            if len(ids):
                index.add(ids, vecs)
    else:
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
    build_seconds = time.perf_counter() - started
    sample_ids = cat.sample_ids(TUNE_QUERIES)
    tune = None
    if sample_ids:
        _, queries = cat.vectors_for(sample_ids)
        tune = index.tune_nprobe(queries, target_recall=settings.target_recall, k=10)
    info = {
        "index_type": index.spec.description,
        "nlist": index.spec.nlist,
        "nprobe": tune.nprobe if tune else index.nprobe,
        "recall_at_10": round(tune.recall_at_10, 4) if tune else None,
        "search_ms": round(tune.ms_per_query, 4) if tune else None,
        "vectors": index.ntotal,
        "build_seconds": round(build_seconds, 3),
    }
    index.save(path, {"generation": generation, "dim": dim, **info})
    with cat.session() as s:
        Catalog.set_meta(s, "index", info)
    return info


def open_index(cat: Catalog, index_dir: str | Path) -> tuple[Any, bool]:
    """For readers: the saved FAISS index, or an exact one made from the catalog if missing.

    Returns (index, lagging) where `lagging` says the catalog has changed since the save
    (a build is running or was killed): hits are still filtered against the catalog.
    """
    path = index_path(index_dir)
    try:
        index, state = vectors.load(path)
        return index, state.get("generation") != cat.generation()
    except (FileNotFoundError, vectors.IndexFileError):
        ids, vecs = cat.all_vectors()
        dim = vecs.shape[1] if vecs.ndim == 2 and vecs.shape[1] else int(cat.get_meta("dim", 1))
        index = vectors.VectorIndex.create(vectors.choose_spec(0, dim), dim=dim)
        if len(ids):
            index.build(ids, vecs)
        return index, True
