"""Groups that do not chain: each connected component is split into stars around kept files.

Pairs link "units" (a stronger tier's groups, or single pictures). Inside a component the kept
file is chosen; a unit joins its group only when the unit's own kept file is within the tier's
threshold of it (the exact similarity, not a chain of links); the units left over are split
again the same way, among themselves, or stay alone for a weaker tier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

# (center unit, [other units]) -> (similarity of their kept files to its kept file, linked)
Similar = Callable[[int, list[int]], tuple[np.ndarray, np.ndarray]]
# the units of a piece (sorted) -> the one whose kept file the keep rule keeps
Center = Callable[[list[int]], int]


@dataclass
class Star:
    """One group of a tier: its kept content, its units (the kept one first) and link scores."""

    center: int  # the kept unit (a unit is named by its kept content)
    units: list[int]
    scores: list[float]  # similarity of each other unit's kept file to the center


def split_stars(edges: dict[int, set[int]], center_of: Center, similar: Similar) -> list[Star]:
    """Stars over the components of `edges` (unit → linked units). Each round costs O(piece)
    similarities and O(piece links); a chain of m units takes ~m/2 rounds only when every
    round's kept unit sits at an end of what is left."""
    pending = components(sorted(edges), edges)
    stars: list[Star] = []
    while pending:
        piece = pending.pop()
        if len(piece) < 2:
            continue
        center = center_of(piece)
        others = [u for u in piece if u != center]
        scores, linked = similar(center, others)
        joined = [u for u, ok in zip(others, linked.tolist(), strict=True) if ok]
        if joined:
            stars.append(Star(center, [center, *joined], [float(s) for s in scores[linked]]))
        rest = set(others) - set(joined)
        pending.extend(components(sorted(rest), edges, rest))
    return stars


def components(
    units: Iterable[int], edges: dict[int, set[int]], alive: set[int] | None = None
) -> list[list[int]]:
    """Connected components of `units` along `edges`, only through `alive` units (all if None)."""
    seen: set[int] = set()
    out: list[list[int]] = []
    for start in units:
        if start in seen:
            continue
        seen.add(start)
        comp, stack = [], [start]
        while stack:
            u = stack.pop()
            comp.append(u)
            for v in edges.get(u, ()):
                if v not in seen and (alive is None or v in alive):
                    seen.add(v)
                    stack.append(v)
        out.append(sorted(comp))
    return out


def popcount64(values: np.ndarray) -> np.ndarray:
    """Set bits of each int64 (numpy < 2 has no bitwise_count)."""
    as_bytes = np.ascontiguousarray(values, dtype=np.int64).view(np.uint8)
    return np.unpackbits(as_bytes).reshape(-1, 64).sum(axis=1)
