"""Pairs above a threshold without an N×N matrix, and groups as connected components.

CLIP pairs come from a k-NN search over a FAISS index (exact while small, IVF with a tuned
nprobe when large); perceptual-hash pairs from a FAISS binary range search on 64-bit codes.
"""

from __future__ import annotations

from collections.abc import Iterable

import faiss
import numpy as np

from indexer.vectors import IndexSpec, VectorIndex, choose_spec


class UnionFind:
    """Disjoint sets over arbitrary hashable keys, with path halving and union by size."""

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

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self, keys: Iterable[int] | None = None) -> list[list[int]]:
        """Components with at least two members, members sorted, biggest first."""
        out: dict[int, list[int]] = {}
        for k in self.parent if keys is None else keys:
            out.setdefault(self.find(k), []).append(k)
        comps = [sorted(v) for v in out.values() if len(v) > 1]
        return sorted(comps, key=lambda c: (-len(c), c[0]))


def cosine_pairs(
    ids: np.ndarray,
    vecs: np.ndarray,
    threshold: float,
    k: int = 16,
    index: VectorIndex | None = None,
    batch: int = 8192,
    target_recall: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, score) with i < j, score ≥ threshold, from each vector's k nearest neighbours.

    `index` may be the build's saved index; otherwise one is made for the collection's size.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    if len(ids) < 2:
        return _empty_pairs()
    if index is None:
        index = VectorIndex.create(choose_spec(len(ids), vecs.shape[1]), vecs.shape[1])
        index.build(ids, vecs)
        if index.is_ivf:
            sample = vecs[np.random.default_rng(0).choice(len(vecs), 500, replace=False)]
            index.tune_nprobe(sample, target_recall=target_recall, k=k)
    k = min(k + 1, index.ntotal)
    src, dst, score = [], [], []
    for start in range(0, len(ids), batch):
        s, nb = index.search(vecs[start : start + batch], k)
        q = np.repeat(ids[start : start + batch], k)
        s, nb = s.ravel(), nb.ravel()
        keep = (nb >= 0) & (s >= threshold) & (nb != q)
        src.append(q[keep])
        dst.append(nb[keep])
        score.append(s[keep])
    return _canonical(np.concatenate(src), np.concatenate(dst), np.concatenate(score))


def hamming_pairs(
    ids: np.ndarray, hashes: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, hamming) with i < j for 64-bit hashes within `max_distance` bits."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) < 2:
        return _empty_pairs()
    codes = np.ascontiguousarray(np.asarray(hashes, dtype=np.int64).view(np.uint8).reshape(-1, 8))
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, dist, nb = index.range_search(codes, max_distance + 1)  # strict: dist < radius
    q = np.repeat(np.arange(len(ids)), np.diff(lims.astype(np.int64)))
    nb = nb.astype(np.int64)
    keep = nb != q
    return _canonical(ids[q[keep]], ids[nb[keep]], dist[keep].astype(np.float32))


def _canonical(
    a: np.ndarray, b: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if not len(lo):
        return _empty_pairs()
    order = np.lexsort((hi, lo))
    lo, hi, s = lo[order], hi[order], s[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return lo[first], hi[first], s[first]


def _empty_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)


__all__ = ["IndexSpec", "UnionFind", "cosine_pairs", "hamming_pairs"]
