"""Which pairs each tier links, found in memory that stays bounded at any size.

The library is read as arrays (one float16 copy of the vectors, the pHashes, the contents with
several paths): no per-path object until a picture is in some pair. Exact duplicates are
contents with several paths. CLIP pairs come from the neighbour search (graph.clip_pairs).
Near-identical pairs: while the collection is small enough that two random 64-bit pHashes
are unlikely to collide anywhere in it, every pair of pHashes is compared; beyond, the
candidates are the pairs the CLIP search compares anyway, over CONFIRM_COSINE, confirmed by
pHash distance: a pair that is pHash-close but CLIP-far is not a re-encode, it is chance.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from math import comb
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from indexer.dedup.cells import Confirm
from indexer.dedup.graph import Pairs, clip_pairs, hamming_pairs
from indexer.dedup.stars import popcount64
from indexer.imaging import MIN_HASH_BITS
from indexer.store import bulk, sync, vectors
from indexer.store.catalog import Catalog, Content, File, has_file
from indexer.store.exact import locate

CONFIRM_COSINE = 0.80  # a near-identical pair (pHash-close) also has at least this CLIP cosine
CHANCE_LIMIT = 0.01  # pHash alone while fewer random collisions than this are expected
MARGIN = 2e-3  # float16 vectors: CLIP pairs are searched this far below the threshold, then
# re-scored from the stored vectors (float16 rounding moves a cosine by < 5e-4 at 32 dims)


@dataclass
class Collection:
    """What the pair searches need about every picture with a path, as arrays."""

    ids: np.ndarray  # contents with a vector, sorted
    vecs: np.ndarray  # their vectors (float16 from the catalog: the one full copy)
    hash_ids: np.ndarray  # contents with an informative pHash, sorted
    hashes: np.ndarray  # those pHashes (int64)
    copies: np.ndarray  # contents with two paths or more (the exact tier)
    contents: int = 0  # contents with a path
    files: int = 0  # paths


def read(cat: Catalog) -> Collection:
    """The collection from the catalog: vectors streamed into one float16 array."""
    n, dim = cat.counts()["vectors"], int(cat.get_meta("dim", 0))
    ids, vecs = np.zeros(n, np.int64), np.zeros((n, dim), np.float16)
    filled = 0
    for batch_ids, batch in cat.vectors(dtype=np.float16):
        end = filled + len(batch_ids)
        if end > len(ids):  # a build added rows since the count
            ids, vecs = np.resize(ids, end), np.resize(vecs, (end, batch.shape[1]))
        ids[filled:end], vecs[filled:end] = batch_ids, batch
        filled = end
    with cat.session() as s:
        hashed = select(Content.id, Content.phash).where(has_file(), Content.phash.is_not(None))
        pairs = np.fromiter(chain.from_iterable(bulk.rows(s, hashed)), np.int64).reshape(-1, 2)
        multi = select(File.content_id).group_by(File.content_id).having(func.count() > 1)
        copies = bulk.ints(s, multi)
        contents = s.scalar(select(func.count(func.distinct(File.content_id)))) or 0
        files = s.scalar(select(func.count(File.id))) or 0
    hash_ids, hashes = pairs[:, 0].copy(), pairs[:, 1].copy()
    del pairs
    coll = _collection(ids[:filled], vecs[:filled], hash_ids, hashes, copies)
    coll.contents, coll.files = contents, files
    return coll


def of_records(records: list[dict[str, Any]], ids: np.ndarray, vecs: np.ndarray) -> Collection:
    """The collection of catalog `records` (one per path) and vectors (those of contents
    without a record are left out)."""
    first: dict[int, dict[str, Any]] = {}
    paths: dict[int, int] = {}
    for rec in records:
        cid = int(rec["content_id"])
        first.setdefault(cid, rec)
        paths[cid] = paths.get(cid, 0) + 1
    have = np.fromiter(first, np.int64, count=len(first))
    keep = np.isin(ids, have)
    if not keep.all():
        ids, vecs = ids[keep], vecs[keep]
    hashed = [(c, r["phash"]) for c, r in first.items() if r["phash"] is not None]
    hash_ids = np.array([c for c, _ in hashed], np.int64)
    hashes = np.array([h for _, h in hashed], np.int64)
    copies = np.array([c for c, k in paths.items() if k > 1], np.int64)
    return _collection(ids, vecs, hash_ids, hashes, copies)


def _collection(
    ids: np.ndarray, vecs: np.ndarray, hash_ids: np.ndarray, hashes: np.ndarray, copies: np.ndarray
) -> Collection:
    """Sorted by id, uninformative pHashes (flat pictures: imaging.hash_informative) dropped."""
    order = np.argsort(ids, kind="stable")
    if not np.array_equal(order, np.arange(len(ids))):
        ids, vecs = ids[order], vecs[order]
    ones = popcount64(hashes) if len(hashes) else np.zeros(0, np.int64)
    informative = (ones >= MIN_HASH_BITS) & (ones <= 64 - MIN_HASH_BITS)
    hash_ids, hashes = hash_ids[informative], hashes[informative]
    order = np.argsort(hash_ids, kind="stable")
    return Collection(ids, vecs, hash_ids[order], hashes[order], np.sort(copies))


def chance_pairs(n: int, bits: int) -> float:
    """Expected pairs among n random 64-bit hashes that differ in at most `bits` bits."""
    within = sum(comb(64, b) for b in range(bits + 1)) / 2.0**64
    return n * (n - 1) / 2 * within


def lent_cells(index_dir: str | Path) -> Any:
    """The build's IVF index, memory-mapped (its centroids serve as the search's cells: no
    k-means here), or None when there is no usable IVF file."""
    try:
        index, _ = vectors.load(sync.index_path(index_dir), mmap=True)
    except (FileNotFoundError, vectors.IndexFileError):
        return None
    return index if index.is_ivf else None


def tier_pairs(
    coll: Collection, options: Any, stats: dict[str, Any], index: Any = None
) -> dict[str, Pairs]:
    """Each tier's linked pairs (near-identical scored 1 - bits/64; CLIP tiers by cosine);
    `stats` receives how each search was done. `index` lends its IVF cells."""
    tiers = (("near-duplicate", options.near_duplicate), ("similar", options.similar))
    margin = MARGIN if coll.vecs.dtype == np.float16 else 0.0  # `rescore` makes them exact
    active = [(tier, value - margin) for tier, value in tiers if value is not None]
    alone = chance_pairs(len(coll.hash_ids), options.hamming) < CHANCE_LIMIT
    confirm = None if alone else _confirm(coll, options.hamming)
    clip, near = clip_pairs(
        coll.ids, coll.vecs, min(v for _, v in active), k=options.k,
        target_recall=options.target_recall, device=options.device, index=index, confirm=confirm,
    )  # fmt: skip
    if alone:
        near = hamming_pairs(coll.hash_ids, coll.hashes, options.hamming)
        how = {**near.info, "method": "pHash, every pair"}
    else:
        near = _with_vectorless(coll, near, options.hamming)
        how = {"method": "CLIP neighbours confirmed by pHash", "least_cosine": CONFIRM_COSINE}
        how["hashes"] = len(coll.hash_ids)
    stats["near-identical"] = {**how, "pairs": len(near)}
    found = {"near-identical": Pairs(near.a, near.b, 1.0 - near.score / 64.0)}
    for tier, threshold in active:
        sel = clip.score >= threshold
        stats[tier] = {**clip.info, "pairs": int(sel.sum())}
        found[tier] = Pairs(clip.a[sel], clip.b[sel], clip.score[sel])
    return found


def _confirm(coll: Collection, max_bits: int) -> Confirm:
    """pHash per vector row (rows without an informative one are not usable)."""
    pos, usable = locate(coll.hash_ids, coll.ids)
    codes = np.where(usable, coll.hashes[pos] if len(coll.hashes) else 0, 0).astype(np.int64)
    return Confirm(codes, usable, max_bits, CONFIRM_COSINE)


def _with_vectorless(coll: Collection, near: Pairs, max_bits: int) -> Pairs:
    """Near-identical pairs plus those of pictures without a vector (not embedded yet): these
    are compared by pHash with every other hash (nothing else can confirm them)."""
    alone = np.flatnonzero(~np.isin(coll.hash_ids, coll.ids))
    if not len(alone):
        return near
    more = hamming_pairs(coll.hash_ids, coll.hashes, max_bits, queries=alone)
    a, b = np.concatenate([near.a, more.a]), np.concatenate([near.b, more.b])
    s = np.concatenate([near.score, more.score])
    key = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)[1]
    return Pairs(a[key], b[key], s[key])


def rescore(
    pairs: dict[str, Pairs], ids: np.ndarray, vecs: np.ndarray, options: Any, stats: dict
) -> dict[str, Pairs]:
    """CLIP pairs scored by the stored vectors (`ids` sorted, float32) and kept when over
    their tier's threshold: the float16 search only proposes them."""
    thresholds = {"near-duplicate": options.near_duplicate, "similar": options.similar}
    for tier, threshold in thresholds.items():
        if tier not in pairs:
            continue
        p = pairs[tier]
        a, b = np.searchsorted(ids, p.a), np.searchsorted(ids, p.b)
        score = np.einsum("ij,ij->i", vecs[a], vecs[b]) if len(a) else p.score
        keep = score >= threshold
        pairs[tier] = Pairs(p.a[keep], p.b[keep], score[keep].astype(np.float32))
        stats[tier]["pairs"] = int(keep.sum())
    return pairs


def involved(coll: Collection, pairs: dict[str, Pairs]) -> list[int]:
    """Contents some tier may group: copies and every content of a pair (the only ones whose
    records, one dict per path, are read)."""
    parts = [coll.copies] + [np.concatenate([p.a, p.b]) for p in pairs.values()]
    return np.unique(np.concatenate(parts)).tolist()
