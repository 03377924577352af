"""Pairs above a threshold without an N×N matrix, and groups as connected components.

CLIP pairs: a k-nearest-neighbour graph from an inverted-file partition of the vectors
(spherical k-means cells; each vector is compared, by blocked matrix products, with the members
of the few cells nearest to it), the number of cells probed tuned on a sample against exact
search. pHash pairs: a FAISS binary range search on the 64-bit codes. Memory stays O(N + pairs).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

EXACT_MAX = 5_000  # up to this many vectors every pair is compared (blocked), no partition
MAX_PROBES = 16  # the most cells a vector is compared against
TUNE_QUERIES = 500  # sample whose exact neighbours set the number of probed cells
MIN_TUNE_PAIRS = 50  # too few pairs over the threshold: tune on the sample's most similar pairs
KMEANS_ITERATIONS = 10
KMEANS_SAMPLE_PER_CELL = 32
BLOCK_ELEMENTS = 1 << 23  # similarities computed per matrix product (32 MB of float32)
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


def cosine_pairs(
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
) -> Pairs:
    """Pairs of L2-normalized vectors with cosine ≥ `threshold`, each vector's k best at most.

    Exact up to EXACT_MAX vectors; beyond, a partition whose probed cells are tuned so that a
    sample's exact pairs are found with `target_recall` (`cells`/`probes` override the tuning).
    `index`, a trained IVF `VectorIndex` (the build's), lends its cells instead of k-means.
    `device`: "auto" compares every pair exactly on a CUDA GPU when torch sees one; a torch
    device string forces that exact path there; "cpu" keeps the CPU search.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    x = np.ascontiguousarray(vecs, dtype=np.float32)
    n = len(ids)
    if n < 2:
        return Pairs(*_empty(), info={"method": "exact", "vectors": n})
    k = max(1, min(k, n - 1))
    from indexer import gpu_math  # imports torch: only when building

    torch_device = gpu_math.cuda_device() if device == "auto" else device
    if torch_device and torch_device != "cpu" and cells is None:
        i, j, s = gpu_math.cosine_join(x, threshold, torch_device)
        info = {"method": f"exact on {torch_device}", "vectors": n}
        qi, nj, s = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([s, s])
        qi, nj, s = _top_k(qi, nj, s, k)
        a, b, s = _canonical(ids[qi], ids[nj], s)
        return Pairs(a, b, s, info)
    lent = _ivf_centroids(index)
    if n <= EXACT_MAX and cells is None and lent is None:
        qi, nj, s = _exact_join(x, threshold, k)
        info: dict[str, Any] = {"method": "exact", "vectors": n}
    else:
        rng = np.random.default_rng(seed)
        clock = _Clock()
        if lent is not None:
            centroids = lent
        else:
            centroids = spherical_kmeans(x, min(cells or choose_cells(n), n), rng)
        ncells = len(centroids)
        clock.lap("kmeans")
        nearest = nearest_cells(x, centroids, min(MAX_PROBES, ncells))
        clock.lap("assign")
        recall = None
        if probes is None:
            probes, recall = tune_probes(x, nearest, threshold, target_recall, rng)
            clock.lap("tune")
        qi, nj, s = _cell_join(x, nearest[:, :probes], nearest[:, 0], ncells, threshold, k)
        clock.lap("join")
        info = {
            "method": "ivf",
            "vectors": n,
            "cells": ncells,
            "probes": int(probes),
            "sample_recall": recall,
            "seconds": clock.laps,
        }
    qi, nj, s = _top_k(qi, nj, s, k)
    a, b, s = _canonical(ids[qi], ids[nj], s)
    return Pairs(a, b, s, info)


class _Clock:
    """Seconds per phase, for the bench and the report's search details."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


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


def choose_cells(n: int) -> int:
    """A power of two near √(2N): balances assigning vectors to cells against joining them."""
    return max(16, 2 ** round(math.log2(math.sqrt(2 * n))))


def spherical_kmeans(
    x: np.ndarray, cells: int, rng: np.random.Generator, iterations: int = KMEANS_ITERATIONS
) -> np.ndarray:
    """Unit-norm centroids of `cells` clusters (Lloyd on cosine), trained on a sample of x."""
    take = min(len(x), cells * KMEANS_SAMPLE_PER_CELL)
    sample = x[np.sort(rng.choice(len(x), take, replace=False))]
    centroids = sample[rng.choice(take, min(cells, take), replace=False)].copy()
    for _ in range(iterations):
        labels = nearest_cells(sample, centroids, 1)[:, 0]
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=len(centroids))
        used = np.flatnonzero(counts)
        sums = np.add.reduceat(sample[order], np.concatenate([[0], np.cumsum(counts)[:-1]])[used])
        centroids[used] = sums
        empty = np.flatnonzero(counts == 0)
        if len(empty):  # restart empty cells on random sample points
            centroids[empty] = sample[rng.choice(take, len(empty), replace=False)]
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids


def nearest_cells(x: np.ndarray, centroids: np.ndarray, p: int) -> np.ndarray:
    """int32 [n, p]: each vector's p most similar centroids, best first (blocked products)."""
    out = np.empty((len(x), p), np.int32)
    step = max(1, BLOCK_ELEMENTS // max(1, len(centroids)))
    for start in range(0, len(x), step):
        sims = x[start : start + step] @ centroids.T
        if p == 1:
            out[start : start + step, 0] = np.argmax(sims, axis=1)
            continue
        part = np.argpartition(-sims, p - 1, axis=1)[:, :p]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[start : start + step] = np.take_along_axis(part, order, axis=1)
    return out


def tune_probes(
    x: np.ndarray,
    nearest: np.ndarray,
    threshold: float,
    target_recall: float,
    rng: np.random.Generator,
) -> tuple[int, float]:
    """Fewest probed cells whose pairs cover a sample's exact pairs with `target_recall`.

    The sample's pairs ≥ threshold are the truth; when there are fewer than MIN_TUNE_PAIRS,
    its most similar pairs are used instead (less similar pairs are harder: conservative).
    """
    n = len(x)
    queries = np.sort(rng.choice(n, min(n, TUNE_QUERIES), replace=False))
    q, j, s = _exact_join(x, threshold, 4, rows=queries, keep_best=True)
    over = s >= threshold
    if over.sum() >= MIN_TUNE_PAIRS:
        q, j = q[over], j[over]
    else:
        top = np.argsort(-s, kind="stable")[:MIN_TUNE_PAIRS]
        q, j = q[top], j[top]
    if not len(q):
        return 1, 1.0
    primary = nearest[:, 0]
    recall = 0.0
    for p in range(1, nearest.shape[1] + 1):
        found = (nearest[q, :p] == primary[j, None]).any(axis=1)
        found |= (nearest[j, :p] == primary[q, None]).any(axis=1)
        recall = float(found.mean())
        if recall >= target_recall:
            return p, round(recall, 4)
    return nearest.shape[1], round(recall, 4)


def _exact_join(
    x: np.ndarray,
    threshold: float,
    k: int,
    rows: np.ndarray | None = None,
    keep_best: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each of `rows` against every vector, in tiles: its k best hits ≥ threshold.

    `keep_best` keeps each row's k most similar neighbours even below the threshold.
    """
    rows = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    chunk = min(len(rows), 4096)
    cols = max(k, BLOCK_ELEMENTS // chunk)
    for r0 in range(0, len(rows), chunk):
        r = rows[r0 : r0 + chunk]
        best_s = np.full((len(r), k), -np.inf, np.float32)
        best_j = np.full((len(r), k), -1, np.int64)
        for c0 in range(0, len(x), cols):
            sims = x[r] @ x[c0 : c0 + cols].T
            local = r - c0
            inside = (local >= 0) & (local < sims.shape[1])
            sims[np.flatnonzero(inside), local[inside]] = -np.inf  # no self-pairs
            both_s = np.concatenate([best_s, sims], axis=1)
            both_j = np.concatenate(
                [best_j, np.broadcast_to(np.arange(c0, c0 + sims.shape[1]), sims.shape)], axis=1
            )
            part = np.argpartition(-both_s, k - 1, axis=1)[:, :k]
            best_s = np.take_along_axis(both_s, part, axis=1)
            best_j = np.take_along_axis(both_j, part, axis=1)
        keep = (best_j >= 0) & np.isfinite(best_s)
        if not keep_best:
            keep &= best_s >= threshold
        rr = np.broadcast_to(r[:, None], best_s.shape)
        out.append((rr[keep], best_j[keep], best_s[keep]))
    return _concat(out)


def _cell_join(
    x: np.ndarray,
    probe: np.ndarray,
    primary: np.ndarray,
    ncells: int,
    threshold: float,
    k: int,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each vector against the members of its probed cells, cell by cell (matrix products).

    Cells run in parallel threads, each product on one BLAS thread: many small products
    scale better this way than one multi-threaded BLAS call at a time.
    """
    n, p = probe.shape
    members = np.argsort(primary, kind="stable")
    m_ends = np.cumsum(np.bincount(primary, minlength=ncells))
    flat = probe.ravel()
    queries = (np.argsort(flat, kind="stable") // p).astype(np.int64)
    q_ends = np.cumsum(np.bincount(flat, minlength=ncells))
    m_starts = np.concatenate([[0], m_ends[:-1]])
    q_starts = np.concatenate([[0], q_ends[:-1]])
    work = (m_ends - m_starts) * (q_ends - q_starts)
    cells = [int(c) for c in np.argsort(-work, kind="stable") if work[c]]  # big cells first

    def join(c: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        m = members[m_starts[c] : m_ends[c]]
        q = queries[q_starts[c] : q_ends[c]]
        xm_t = np.ascontiguousarray(x[m].T)
        step = max(1, BLOCK_ELEMENTS // len(m))
        return [
            _hits(x[q[s : s + step]] @ xm_t, q[s : s + step], m, threshold, k)
            for s in range(0, len(q), step)
        ]

    workers = workers or os.cpu_count() or 1
    with _one_blas_thread(), ThreadPoolExecutor(max_workers=workers) as pool:
        out = [hit for hits in pool.map(join, cells) for hit in hits]
    return _concat(out)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Single-threaded BLAS inside (threadpoolctl, when installed); the caller runs threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # still correct, only slower on many small products
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _hits(
    sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, threshold: float, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, sim) of a block's entries ≥ threshold, at most k per row, no self-pairs."""
    over = sims >= threshold
    if sims.shape[1] > k and over.sum() > k * len(rows):  # dense: cap each row first
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(sims, part, axis=1)
        r, c = np.nonzero(vals >= threshold)
        c, s = part[r, c], vals[r, c]
    else:
        r, c = np.nonzero(over)
        s = sims[r, c]
    qi, nj = rows[r].astype(np.int64), cols[c].astype(np.int64)
    keep = qi != nj
    return qi[keep], nj[keep], s[keep].astype(np.float32)


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


def hamming_pairs(ids: np.ndarray, hashes: np.ndarray, max_distance: int) -> Pairs:
    """Pairs of 64-bit hashes (signed int64) within `max_distance` bits; exact.

    A FAISS binary flat range search in query blocks: popcount comparisons, no matrix.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    info = {"method": "faiss IndexBinaryFlat range_search", "hashes": len(ids)}
    if len(ids) < 2:
        return Pairs(*_empty(), info=info)
    codes = np.ascontiguousarray(np.asarray(hashes, dtype=">i8").view(np.uint8).reshape(-1, 8))
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(codes), HAMMING_BLOCK):
        block = codes[start : start + HAMMING_BLOCK]
        lims, dist, nb = index.range_search(block, max_distance + 1)  # strict: dist < radius
        q = start + np.repeat(np.arange(len(block)), np.diff(lims.astype(np.int64)))
        nb = nb.astype(np.int64)
        keep = nb > q  # each pair once
        parts.append((q[keep], nb[keep], dist[keep].astype(np.float32)))
    q, nb, dist = _concat(parts)
    a, b, d = _canonical(ids[q], ids[nb], dist)
    return Pairs(a, b, d, info)


def _concat(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return _empty()
    return (
        np.concatenate([p[0] for p in parts]).astype(np.int64),
        np.concatenate([p[1] for p in parts]).astype(np.int64),
        np.concatenate([p[2] for p in parts]).astype(np.float32),
    )


def _canonical(
    a: np.ndarray, b: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs as (low id, high id), each once, sorted."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if not len(lo):
        return _empty()
    order = np.lexsort((hi, lo))
    lo, hi, s = lo[order], hi[order], s[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return lo[first], hi[first], s[first]


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
