"""CLIP pairs by matrix products on the CPU: exact blocked joins for small sets and the
inverted-file cell join (spherical k-means cells, probes tuned on a sample) for large ones.

The vectors may be float16 (dedup holds one half-size copy): each block is multiplied in
float32. A `Confirm` also collects, from the same products, the pairs over a lower cosine whose
pHashes are close: the near-identical tier's candidates, found without comparing every pHash.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from indexer.dedup.stars import popcount64

MAX_PROBES = 16  # the most cells a vector is compared against
NEIGHBOUR_CELLS = 48  # with known cells: a vector's probes are among its cell's nearest cells
TUNE_QUERIES = 500  # sample whose exact neighbours set the number of probed cells
MIN_TUNE_PAIRS = 50  # too few pairs over the threshold: tune on the sample's most similar pairs
KMEANS_ITERATIONS = 10
KMEANS_SAMPLE_PER_CELL = 32
BLOCK_ELEMENTS = 1 << 23  # similarities computed per matrix product (32 MB of float32)
Hits = tuple[np.ndarray, np.ndarray, np.ndarray]  # (rows, cols, similarity or differing bits)


@dataclass
class Confirm:
    """pHash per row of the vectors (`usable`: an informative one): a pair over `floor` cosine
    whose hashes differ in at most `max_bits` bits is a near-identical candidate."""

    codes: np.ndarray
    usable: np.ndarray
    max_bits: int
    floor: float

    def hits(self, sims: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Hits:
        """(row, col, differing bits) of a block's pairs over the floor with close hashes."""
        r, c = np.nonzero(sims >= self.floor)
        qi, nj = rows[r].astype(np.int64), cols[c].astype(np.int64)
        other = qi != nj
        return self.hits_of_pairs(qi[other], nj[other], sims[r[other], c[other]])

    def hits_of_pairs(self, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> Hits:
        """The same test on pairs (row, col, cosine) found another way (the GPU's exact join)."""
        over = s >= self.floor
        i, j = i[over], j[over]
        keep = self.usable[i] & self.usable[j]
        i, j = i[keep], j[keep]
        bits = popcount64(np.bitwise_xor(self.codes[i], self.codes[j]))
        close = bits <= self.max_bits
        return i[close], j[close], bits[close].astype(np.float32)


def one_blas_thread() -> Any:
    """BLAS on one thread inside: the caller runs many small products in its own threads (one
    multi-threaded BLAS call at a time would only spin)."""
    return threadpool_limits(limits=1, user_api="blas")


def f32(x: np.ndarray) -> np.ndarray:
    """A block as float32 (BLAS has no float16 products), contiguous."""
    return np.ascontiguousarray(x, dtype=np.float32)


def choose_cells(n: int) -> int:
    """A power of two near √(2N): balances assigning vectors to cells against joining them."""
    return max(16, 2 ** round(math.log2(math.sqrt(2 * n))))


def spherical_kmeans(
    x: np.ndarray, cells: int, rng: np.random.Generator, iterations: int = KMEANS_ITERATIONS
) -> np.ndarray:
    """Unit-norm centroids of `cells` clusters (Lloyd on cosine), trained on a sample of x:
    the same k-means that trains the FAISS index on a GPU, here on the CPU."""
    from indexer import gpu_math  # imports torch

    take = min(len(x), cells * KMEANS_SAMPLE_PER_CELL)
    sample = f32(x[np.sort(rng.choice(len(x), take, replace=False))])
    seed = int(rng.integers(1 << 31))
    return gpu_math.spherical_kmeans(sample, cells, "cpu", iterations, seed)


def nearest_cells(x: np.ndarray, centroids: np.ndarray, p: int) -> np.ndarray:
    """int32 [n, p]: each vector's p most similar centroids, best first (blocked products)."""
    out = np.empty((len(x), p), np.int32)
    step = max(1, BLOCK_ELEMENTS // max(1, len(centroids)))
    for start in range(0, len(x), step):
        sims = f32(x[start : start + step]) @ centroids.T
        if p == 1:
            out[start : start + step, 0] = np.argmax(sims, axis=1)
            continue
        part = np.argpartition(-sims, p - 1, axis=1)[:, :p]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[start : start + step] = np.take_along_axis(part, order, axis=1)
    return out


def nearest_from_primary(
    x: np.ndarray, centroids: np.ndarray, primary: np.ndarray, p: int
) -> np.ndarray:
    """int32 [n, p] as `nearest_cells` when each vector's own cell is known (the IVF list it is
    stored in): its other p - 1 cells are the nearest among its cell's NEIGHBOUR_CELLS nearest
    cells, so the cost grows with N, not N × cells."""
    ncells = len(centroids)
    around = nearest_cells(centroids, centroids, min(ncells, NEIGHBOUR_CELLS))  # itself first
    out = np.empty((len(x), p), np.int32)
    order = np.argsort(primary, kind="stable")
    ends = np.cumsum(np.bincount(primary, minlength=ncells))
    with one_blas_thread():  # many small products: threads would only spin
        for cell in np.flatnonzero(np.diff(np.concatenate([[0], ends]))).tolist():
            rows = order[ends[cell - 1] if cell else 0 : ends[cell]]
            near = around[cell]
            sims = f32(x[rows]) @ centroids[near].T
            sims[:, near == cell] = np.inf  # its own cell comes first
            out[rows] = near[np.argsort(-sims, axis=1, kind="stable")[:, :p]]
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
    q, j, s = exact_join(x, threshold, 4, rows=queries, keep_best=True)
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


def exact_join(
    x: np.ndarray,
    threshold: float,
    k: int,
    rows: np.ndarray | None = None,
    keep_best: bool = False,
    confirm: Confirm | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each of `rows` against every vector, in tiles: its k best hits ≥ threshold.

    `keep_best` keeps each row's k most similar neighbours even below the threshold; with a
    `confirm`, returns (hits, near-identical candidates) instead.
    """
    rows = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
    out: list[Hits] = []
    near: list[Hits] = []
    chunk = min(len(rows), 4096)
    # float32 columns ≤ 32 MB; the top-k merge holds ~5 arrays of chunk × cols: ≤ 2M each
    cols = max(k, min(BLOCK_ELEMENTS // x.shape[1], (BLOCK_ELEMENTS >> 2) // max(1, chunk)))
    for r0 in range(0, len(rows), chunk):
        r = rows[r0 : r0 + chunk]
        xr = f32(x[r])
        best_s = np.full((len(r), k), -np.inf, np.float32)
        best_j = np.full((len(r), k), -1, np.int64)
        for c0 in range(0, len(x), cols):
            sims = xr @ f32(x[c0 : c0 + cols]).T
            if confirm is not None:
                near.append(confirm.hits(sims, r, np.arange(c0, c0 + sims.shape[1])))
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
    if confirm is not None:
        return concat_hits(out), concat_hits(near)  # type: ignore[return-value]
    return concat_hits(out)


def cell_join(
    x: np.ndarray,
    probe: np.ndarray,
    primary: np.ndarray,
    ncells: int,
    threshold: float,
    k: int,
    workers: int | None = None,
    confirm: Confirm | None = None,
) -> tuple[Hits, Hits]:
    """Each vector against the members of its probed cells, cell by cell (matrix products):
    (hits ≥ threshold, near-identical candidates of `confirm`, empty without one).

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

    def join(c: int) -> list[tuple[Hits, Hits | None]]:
        m = members[m_starts[c] : m_ends[c]]
        q = queries[q_starts[c] : q_ends[c]]
        xm_t = np.ascontiguousarray(f32(x[m]).T)
        step = max(1, BLOCK_ELEMENTS // max(len(m), x.shape[1]))  # the float32 rows: ≤ 32 MB
        out = []
        for s in range(0, len(q), step):
            sims = f32(x[q[s : s + step]]) @ xm_t
            near = None if confirm is None else confirm.hits(sims, q[s : s + step], m)
            out.append((_hits(sims, q[s : s + step], m, threshold, k), near))
        return out

    workers = workers or os.cpu_count() or 1
    with one_blas_thread(), ThreadPoolExecutor(max_workers=workers) as pool:
        found = [hit for hits in pool.map(join, cells) for hit in hits]
    return concat_hits([h for h, _ in found]), concat_hits([c for _, c in found if c is not None])


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


def concat_hits(parts: list[Hits]) -> Hits:
    """(rows, cols, sims) of several blocks as one int64, int64, float32 triple."""
    if not parts:
        return no_pairs()
    return (
        np.concatenate([p[0] for p in parts]).astype(np.int64),
        np.concatenate([p[1] for p in parts]).astype(np.int64),
        np.concatenate([p[2] for p in parts]).astype(np.float32),
    )


def no_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An empty (rows, cols, sims) triple."""
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
