"""How the catalog stores a vector: float16 BLOBs, read back as float32 unit vectors.

A vector is a float16 BLOB (catalog schema 5 on: half the bytes of float32, two rows to a
SQLite page instead of one; cosines move by < 1e-4). Rows written before stay float32 and are
read by their length, so an older catalog keeps working as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STORED = np.float16
BATCH = 5_000  # rows per read: 8 MB of float16 768-d vectors, 15 MB as float32


def encode(vector: np.ndarray) -> bytes:
    """A unit vector as the catalog stores it (float16 bytes)."""
    return np.asarray(vector, dtype=np.float32).astype(STORED).tobytes()


def decode(blobs: Sequence[bytes], dim: int, dtype: type = np.float32) -> np.ndarray:
    """[n, dim] vectors from BLOBs of float16 (2·dim bytes, re-normalized) or float32 (4·dim
    bytes: rows of older catalogs). `dim` 0 (unknown) reads float32."""
    n = len(blobs)
    if not n:
        return np.zeros((0, dim), dtype)
    dim = dim or len(blobs[0]) // 4
    kinds = {len(b) for b in blobs}
    if kinds == {2 * dim}:
        half = np.frombuffer(b"".join(blobs), STORED).reshape(n, dim)
        return _unit(half.astype(np.float32)).astype(dtype, copy=False)
    if kinds == {4 * dim}:
        return np.frombuffer(b"".join(blobs), np.float32).reshape(n, dim).astype(dtype)
    return np.concatenate([decode([b], dim, dtype) for b in blobs])  # a mixed batch


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled back to unit length (float16 rounding moves the norm by ~1e-4)."""
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x
