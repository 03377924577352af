"""Pairs above a threshold without an N×N matrix, and groups as connected components.

CLIP pairs: a k-nearest-neighbour graph from an inverted-file partition of the vectors
(cells.py: spherical k-means cells, each vector compared by matrix products with the members of
its nearest cells, probes tuned on a sample), or exact tiles on a GPU (gpu_math.py). pHash
pairs: a FAISS binary range search on the 64-bit codes. Memory stays O(N + pairs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from indexer.clock import Laps
from indexer.dedup.cells import (
    MAX_PROBES,
    Confirm,
    Hits,
    cell_join,
    choose_cells,
    concat_hits,
    exact_join,
    f32,
    nearest_cells,
    nearest_from_primary,
    no_pairs,
    spherical_kmeans,
    tune_probes,
)
from indexer.devices import cuda_device
from indexer.store.exact import locate

EXACT_MAX = 5_000  # up to this many vectors every pair is compared (blocked), no partition
HAMMING_BLOCK = 1 << 16  # pHash queries per FAISS range search call


class UnionFind:
    """Disjoint sets over integer keys, with path halving and union by size."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.size: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        if x not in parent:
            parent[x] = x
            self.size[x] = 1
            return x
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> int:
        """Merge the sets of `a` and `b`; returns the root of the merged set."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return ra

    def groups(self, keys: Iterable[int] | None = None) -> list[list[int]]:
        """Components with at least two members, members sorted, biggest first."""
        out: dict[int, list[int]] = {}
        for k in list(self.parent) if keys is None else keys:
            out.setdefault(self.find(k), []).append(k)
        comps = [sorted(v) for v in out.values() if len(v) > 1]
        return sorted(comps, key=lambda c: (-len(c), c[0]))


@dataclass
class Pairs:
    """Linked pairs (a < b) with their similarity, and how the search was done."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.a)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Unpacks as `a, b, score = pairs`."""
        return iter((self.a, self.b, self.score))

    def as_set(self) -> set[tuple[int, int]]:
        return set(zip(self.a.tolist(), self.b.tolist(), strict=True))


def _partitioned_join(
    x: np.ndarray,
    threshold: float,
    k: int,
    lent: np.ndarray | None,
    cells: int | None,
    probes: int | None,
    target_recall: float,
    rng: np.random.Generator,
    confirm: Confirm | None = None,
    primary: np.ndarray | None = None,
) -> tuple[Hits, Hits, dict[str, Any]]:
    """Each vector against the members of its nearest cells (k-means, or the IVF's lent
    centroids with each vector's own list, `primary`); the probed cells tuned on a sample to
    `target_recall` unless `probes` is given."""
    n, clock = len(x), Laps()
    centroids = (
        lent if lent is not None else spherical_kmeans(x, min(cells or choose_cells(n), n), rng)
    )
    ncells = len(centroids)
    clock.lap("kmeans" if lent is None else "lent cells")
    p = min(MAX_PROBES, ncells)
    if primary is not None:
        nearest = nearest_from_primary(x, centroids, primary, p)
    else:
        nearest = nearest_cells(x, centroids, p)
    clock.lap("assign")
    recall = None
    if probes is None:
        probes, recall = tune_probes(x, nearest, threshold, target_recall, rng)
        clock.lap("tune")
    hits, near = cell_join(
        x, nearest[:, :probes], nearest[:, 0], ncells, threshold, k, confirm=confirm
    )
    clock.lap("join")
    info = {"method": "ivf", "vectors": n, "cells": ncells, "probes": int(probes)}
    return hits, near, {**info, "sample_recall": recall, "seconds": clock.laps}


def cosine_pairs(
    ids: np.ndarray, vecs: np.ndarray, threshold: float, k: int = 16, **options: Any
) -> Pairs:
    """Pairs of L2-normalized vectors with cosine ≥ `threshold`, each vector's k best at most:
    `clip_pairs` (same options) without a pHash confirmation."""
    return clip_pairs(ids, vecs, threshold, k, **options)[0]


def clip_pairs(
    ids: np.ndarray,
    vecs: np.ndarray,
    threshold: float,
    k: int = 16,
    *,
    target_recall: float = 0.99,
    cells: int | None = None,
    probes: int | None = None,
    index: Any = None,
    seed: int = 0,
    device: str = "auto",
    confirm: Confirm | None = None,
) -> tuple[Pairs, Pairs]:
    """Pairs of L2-normalized vectors (float32 or float16) with cosine ≥ `threshold`, each
    vector's k best at most; and, with a `confirm`, every pair the search compares that is
    over its floor cosine with close pHashes (score: differing bits; no k limit).

    Exact up to EXACT_MAX vectors; beyond, a partition whose probed cells are tuned so that a
    sample's exact pairs are found with `target_recall` (`cells`/`probes` override the tuning).
    `index`, a trained IVF `VectorIndex` (the build's), lends its cells instead of k-means.
    `device`: "auto" compares every pair exactly on a CUDA GPU when torch sees one and the
    vectors fit in its free memory; a torch device string forces that exact path there; "cpu"
    keeps the CPU search.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    x = vecs if vecs.dtype in (np.float16, np.float32) else f32(vecs)
    n = len(ids)
    if n < 2:
        empty = Pairs(*no_pairs(), info={"method": "exact", "vectors": n})
        return empty, Pairs(*no_pairs())
    k = max(1, min(k, n - 1))
    join_device = None if cells is not None else _join_device(device, x.shape)
    lent = _ivf_centroids(index)
    near: Hits = no_pairs()
    if join_device:
        qi, nj, s, near = _gpu_join(x, threshold, join_device, confirm)
        info: dict[str, Any] = {"method": f"exact on {join_device}", "vectors": n}
    elif n <= EXACT_MAX and cells is None and lent is None:
        found = exact_join(x, threshold, k, confirm=confirm)
        (qi, nj, s), near = found if confirm is not None else (found, near)  # type: ignore[misc]
        info = {"method": "exact", "vectors": n}
    else:
        primary = None if lent is None else _ivf_primary(index, ids, x, lent)
        (qi, nj, s), near, info = _partitioned_join(
            x, threshold, k, lent, cells, probes, target_recall, np.random.default_rng(seed),
            confirm, primary,
        )  # fmt: skip
    qi, nj, s = _top_k(qi, nj, s, k)
    a, b, s = _canonical(ids[qi], ids[nj], s)
    return Pairs(a, b, s, info), Pairs(*_canonical(ids[near[0]], ids[near[1]], near[2]))


def _gpu_join(
    x: np.ndarray, threshold: float, device: str, confirm: Confirm | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Hits]:
    """Every pair over the threshold, exact on the GPU (both directions, for `_top_k`); with a
    `confirm`, the join runs at its floor and its pHash-close pairs are the candidates."""
    from indexer.gpu_math import cosine_join

    low = threshold if confirm is None else min(threshold, confirm.floor)
    i, j, s = cosine_join(f32(x), low, device)
    near = no_pairs() if confirm is None else confirm.hits_of_pairs(i, j, s)
    over = s >= threshold
    i, j, s = i[over], j[over], s[over]
    return np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([s, s]), near


def _join_device(device: str, shape: tuple[int, ...]) -> str | None:
    """The torch device for the exact tiled join, or None for the CPU search: "auto" takes a
    CUDA GPU when torch sees one and the vectors fit in its free memory."""
    if device == "cpu":
        return None
    if device != "auto":
        return device
    cuda = cuda_device()
    if cuda is None:
        return None
    from indexer.gpu_math import join_fits  # imports torch

    return cuda if join_fits(cuda, shape) else None


def _ivf_centroids(index: Any) -> np.ndarray | None:
    """Unit-norm coarse centroids of a trained FAISS IVF index (or VectorIndex), else None."""
    raw = getattr(index, "index", index)
    if raw is None:
        return None
    try:
        ivf = faiss.extract_index_ivf(raw)
    except RuntimeError:  # a flat index: nothing to lend
        return None
    if not ivf.is_trained or ivf.nlist < 2:
        return None
    c = ivf.quantizer.reconstruct_n(0, ivf.nlist).astype(np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def _ivf_primary(
    index: Any, ids: np.ndarray, x: np.ndarray, centroids: np.ndarray
) -> np.ndarray | None:
    """Each vector's list in a lent `VectorIndex` (where it is stored: no search), the nearest
    cell of the vectors it does not hold yet; None for a bare FAISS index."""
    if not hasattr(index, "lists"):
        return None
    stored, where = index.lists()
    order = np.argsort(stored, kind="stable")
    stored, where = stored[order], where[order]
    pos, found = locate(stored, ids)
    primary = np.where(found, where[pos] if len(where) else 0, 0).astype(np.int32)
    missing = np.flatnonzero(~found)
    if len(missing):
        primary[missing] = nearest_cells(x[missing], centroids, 1)[:, 0]
    return primary


def _top_k(
    q: np.ndarray, j: np.ndarray, s: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's k most similar neighbours (a query may have hits from several cells)."""
    if not len(q):
        return q, j, s
    order = np.lexsort((-s, j, q))
    q, j, s = q[order], j[order], s[order]
    once = np.ones(len(q), bool)  # the same neighbour found through two cells
    once[1:] = (q[1:] != q[:-1]) | (j[1:] != j[:-1])
    q, j, s = q[once], j[once], s[once]
    order = np.lexsort((j, -s, q))
    q, j, s = q[order], j[order], s[order]
    first = np.ones(len(q), bool)
    first[1:] = q[1:] != q[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(len(q)), 0))
    keep = (np.arange(len(q)) - run_start) < k
    return q[keep], j[keep], s[keep]


def hamming_pairs(
    ids: np.ndarray, hashes: np.ndarray, max_distance: int, queries: np.ndarray | None = None
) -> Pairs:
    """Pairs of 64-bit hashes (signed int64) within `max_distance` bits; exact.

    A FAISS binary flat range search in query blocks: popcount comparisons, no matrix. Every
    hash is a query, or only the rows `queries` (against all the hashes).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    info = {"method": "faiss IndexBinaryFlat range_search", "hashes": len(ids)}
    if len(ids) < 2:
        return Pairs(*no_pairs(), info=info)
    codes = np.ascontiguousarray(np.asarray(hashes, dtype=">i8").view(np.uint8).reshape(-1, 8))
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    rows = np.arange(len(codes)) if queries is None else np.asarray(queries, np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(rows), HAMMING_BLOCK):
        block = rows[start : start + HAMMING_BLOCK]
        lims, dist, nb = index.range_search(codes[block], max_distance + 1)  # dist < radius
        q = block[np.repeat(np.arange(len(block)), np.diff(lims.astype(np.int64)))]
        nb = nb.astype(np.int64)
        keep = nb > q if queries is None else nb != q  # each pair once (_canonical dedupes)
        parts.append((q[keep], nb[keep], dist[keep].astype(np.float32)))
    q, nb, dist = concat_hits(parts)
    a, b, d = _canonical(ids[q], ids[nb], dist)
    return Pairs(a, b, d, info)


def _canonical(
    a: np.ndarray, b: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs as (low id, high id), each once, sorted."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if not len(lo):
        return no_pairs()
    order = np.lexsort((hi, lo))
    lo, hi, s = lo[order], hi[order], s[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return lo[first], hi[first], s[first]
