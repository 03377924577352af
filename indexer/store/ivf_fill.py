"""Train an IVF index on a sample, then fill it from a stream of (ids, vectors) batches.

Two passes over the stream: the first assigns every vector to its list, so that each list is
allocated once at its final size; the second encodes and adds. The build's peak is then the
finished index plus one batch (adding straight away grows each list by doubling: up to 2×).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import faiss
import numpy as np
from faiss.contrib.ivf_tools import add_preassigned

from indexer.store.index_choice import IndexSpec

KMEANS_ITERATIONS = 10
# a fresh stream of (ids int64, vectors float32 [n, dim]) each time it is called
Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]
Assign = Callable[[np.ndarray], np.ndarray]


def train(
    index: Any,
    spec: IndexSpec,
    sample: np.ndarray,
    *,
    seed: int = 0,
    use_gpu: bool = False,
    torch_device: str | None = None,
) -> tuple[Any, Assign]:
    """Train `index` on `sample`; returns the (possibly new) index and how to assign vectors
    to its lists. IVF-Flat with a torch device (and no faiss-gpu) trains and assigns by torch
    k-means there; otherwise FAISS trains, on its GPUs when `use_gpu`."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    ivf = faiss.extract_index_ivf(index)
    if torch_device and not use_gpu and spec.kind == "ivf-flat":
        from indexer import gpu_math  # imports torch

        try:
            centroids = gpu_math.spherical_kmeans(
                sample, spec.nlist or 1, torch_device, KMEANS_ITERATIONS, seed
            )
        except gpu_math.OutOfMemoryError:
            pass  # train with FAISS on the CPU instead
        else:
            ivf.quantizer.add(centroids)
            ivf.is_trained = True
            return index, lambda x: gpu_math.assign(x, centroids, torch_device)
    ivf.cp.niter = KMEANS_ITERATIONS
    ivf.cp.seed = seed + 1234
    target = faiss.index_cpu_to_all_gpus(index) if use_gpu else index
    target.train(sample)
    index = faiss.index_gpu_to_cpu(target) if use_gpu else target
    quantizer = faiss.extract_index_ivf(index).quantizer
    return index, lambda x: quantizer.assign(np.ascontiguousarray(x, dtype=np.float32), 1)[:, 0]


def fill(index: Any, chunks: Chunks, assign: Assign) -> None:
    """Add every vector of `chunks` to the trained IVF `index`, each list allocated once."""
    ivf = faiss.extract_index_ivf(index)
    seen_ids, seen_lists = [], []
    for ids, x in chunks():
        seen_ids.append(np.asarray(ids, np.int64))
        seen_lists.append(np.asarray(assign(_prepared(index, x)), np.int32))
    if not seen_ids:
        return
    all_ids, lists = np.concatenate(seen_ids), np.concatenate(seen_lists)
    del seen_ids, seen_lists
    _reserve(ivf, np.bincount(lists, minlength=ivf.nlist))
    done = 0
    for ids, x in chunks():
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        xt = _prepared(index, x)
        known = lists[done : done + len(ids)]
        if len(known) != len(ids) or not np.array_equal(all_ids[done : done + len(ids)], ids):
            known = assign(xt)  # the stream changed between the passes: assign again
        add_preassigned(ivf, xt, np.asarray(known, np.int64), ids)
        done += len(ids)
    index.ntotal = ivf.ntotal


def _prepared(index: Any, x: np.ndarray) -> np.ndarray:
    """Vectors as FAISS takes them (a pre-transform such as OPQ is not supported here)."""
    if isinstance(index, faiss.IndexPreTransform):
        raise ValueError("ivf_fill: an index with a pre-transform (OPQ) is not supported")
    return np.ascontiguousarray(x, dtype=np.float32)


def _reserve(ivf: Any, sizes: np.ndarray) -> None:
    """Give each inverted list the capacity for `sizes` more entries, allocated once: growing
    to the final size and back keeps the capacity (std::vector) without the doubling."""
    lists = ivf.invlists
    for list_no in np.flatnonzero(sizes).tolist():
        now = lists.list_size(list_no)
        lists.resize(list_no, now + int(sizes[list_no]))
        lists.resize(list_no, now)
