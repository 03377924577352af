"""Near-identical candidates at scale (dedup/candidates.py): once two random pHashes are likely
to collide somewhere in the library, a pHash-close pair must also be CLIP-close."""

from __future__ import annotations

import numpy as np
from conftest import fill_planted, names

from indexer.dedup import DedupOptions, dedup


def flip(value: int, bits: list[int]) -> int:
    """A signed 64-bit hash with `bits` flipped."""
    value = int(value) & 0xFFFFFFFFFFFFFFFF
    for bit in bits:
        value ^= 1 << int(bit)
    return value - (1 << 64) if value >= 1 << 63 else value


def test_near_identical_needs_clip_once_chance_collisions_are_likely(tmp_path):
    """Among many pictures two random pHashes collide: a pHash-close pair is then near-identical
    only if CLIP agrees (a re-encode); a pair CLIP sees as different pictures is chance."""
    rng = np.random.default_rng(11)
    n, dim = 600, 48
    x = rng.standard_normal((n, dim)).astype(np.float32)
    hashes = [flip(0, rng.choice(64, 32, replace=False).tolist()) for _ in range(n)]
    for i in range(10):  # re-encodes: the same picture, a few bits off
        x[300 + i] = x[i] + 0.05 * np.linalg.norm(x[i]) / np.sqrt(dim) * rng.standard_normal(dim)
        hashes[300 + i] = flip(hashes[i], rng.choice(64, 3, replace=False).tolist())
    for i in range(20, 30):  # other pictures whose hashes happen to be as close
        hashes[300 + i] = flip(hashes[i], rng.choice(64, 3, replace=False).tolist())
    pictures = {f"p{i:03d}.jpg": {"vector": x[i], "phash": hashes[i]} for i in range(n)}
    fill_planted(tmp_path / "index", pictures, tmp_path)
    options = DedupOptions(hamming=16)  # 600 hashes within 16 bits: a few collide by chance
    report = dedup(tmp_path / "index", options)
    assert report.search["near-identical"]["method"] == "CLIP neighbours confirmed by pHash"
    near = sorted(sorted(g) for g in names(report, "near-identical"))
    assert near == [[f"p{i:03d}.jpg", f"p{300 + i:03d}.jpg"] for i in range(10)]
    # a small library compares every pHash (chance collisions are unlikely there)
    few = {k: v for k, v in pictures.items() if k < "p030.jpg" or "p300.jpg" <= k < "p330.jpg"}
    fill_planted(tmp_path / "small", few, tmp_path)
    small = dedup(tmp_path / "small")
    assert small.search["near-identical"]["method"] == "pHash, every pair"
    assert len(names(small, "near-identical")) == 20
