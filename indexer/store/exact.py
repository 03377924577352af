"""Exact inner products from the stored vectors: re-ranking the candidates of compressed codes
(SQ8, PQ), and the exact neighbours that nprobe is tuned against. Both stream or fetch only
what they need from the catalog, never the whole matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

# (ids) -> (ids found, sorted, and their stored float32 vectors): the catalog's vectors_for
VectorSource = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
BLOCK = 4096  # stored vectors compared with the queries at once


def locate(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in `sorted_ids`, found) of each of `ids`; a position where `found` is False
    is only kept in range, not meaningful."""
    if not len(sorted_ids):
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return pos, sorted_ids[pos] == ids


def rerank(
    queries: np.ndarray, candidates: np.ndarray, k: int, exact: VectorSource
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each query's candidate ids by exact inner product with their stored
    vectors (ids the source no longer has are dropped); -1 pads a short row."""
    wanted = np.unique(candidates[candidates >= 0])
    found, vecs = exact(wanted)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    ids = np.full((len(queries), k), -1, np.int64)
    if not len(found):
        return scores, ids
    sims = vecs @ queries.T  # [found, nq]
    for q, row in enumerate(candidates):
        row = row[row >= 0]
        pos, hit = locate(found, row)
        pos = pos[hit]
        s = sims[pos, q]
        best = np.argsort(-s, kind="stable")[:k]
        scores[q, : len(best)], ids[q, : len(best)] = s[best], found[pos[best]]
    return scores, ids


def neighbours(
    queries: np.ndarray,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Ids [nq, k] of each query's k nearest stored vectors (inner product), best first, over
    a stream of (ids, vectors) batches, leaving out the ids `exclude`: one pass, memory of one
    batch and one block."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for ids, x in chunks:
        for start in range(0, len(ids), BLOCK):
            block_ids = ids[start : start + BLOCK]
            sims = queries @ np.ascontiguousarray(x[start : start + BLOCK], dtype=np.float32).T
            if exclude is not None:
                sims[:, np.isin(block_ids, exclude)] = -np.inf
            sims = np.concatenate([best_s, sims], axis=1)
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            cols = np.concatenate(
                [best_i, np.broadcast_to(block_ids, (len(queries), len(block_ids)))], axis=1
            )
            best_s = np.take_along_axis(sims, top, axis=1)
            best_i = np.take_along_axis(cols, top, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1)
