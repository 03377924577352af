"""A fingerprint of a CLIP image projection: which CLIP an index's vectors (or a text tower's
companion image tower) come from, whatever the file's layout or float precision.

Sixteen numbers, `R @ P @ r` for fixed pseudo-random R and r (numpy's legacy RandomState: its
stream is frozen across versions), scaled to unit length: every weight of the projection P
counts, a scale of P does not (cosines ignore it), and the fp16 rounding of OpenAI's own file
moves them by ~1e-4 where another CLIP's projection moves them by ~1. Imports nothing heavy.
"""

from __future__ import annotations

import math
from typing import Any

SIZE = 16
SEED = 20240405
TOLERANCE = 1e-2  # largest difference of one number between two copies of one projection


def projection_fingerprint(proj: Any) -> list[float]:
    """The fingerprint of an image projection given as our Linear weight [dim, width] (a torch
    tensor or an array)."""
    import numpy as np

    p = np.asarray(proj.detach().cpu().double() if hasattr(proj, "detach") else proj, np.float64)
    rng = np.random.RandomState(SEED)
    right = rng.standard_normal(p.shape[1])
    left = rng.standard_normal((SIZE, p.shape[0]))
    sketch = left @ (p @ right)
    norm = float(np.linalg.norm(sketch)) or 1.0
    return [round(float(x) / norm, 6) for x in sketch]


def same_projection(a: list[float] | None, b: list[float] | None) -> bool | None:
    """True/False when both fingerprints are known (same CLIP image projection or not), None
    when either is missing or malformed (an old catalog, a text-only file)."""
    if not _valid(a) or not _valid(b):
        return None
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= TOLERANCE  # type: ignore[arg-type]


def _valid(f: Any) -> bool:
    return (
        isinstance(f, list)
        and len(f) == SIZE
        and all(isinstance(x, int | float) and math.isfinite(x) for x in f)
    )
