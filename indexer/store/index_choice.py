"""Which FAISS index a collection gets: exact while small, then the most exact IVF whose build
fits the memory budget (by default a quarter of this machine's RAM).

The budget bounds the build's peak, not only the saved file: the finished lists plus the
build's own buffers, or the training sample, whichever is larger.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

FLAT_MAX = 50_000  # below this many vectors exact search is fast enough (bench/faiss_index.py)
MIN_TRAIN_PER_LIST = 39
MAX_TRAIN_PER_LIST = 50  # k-means cost grows with the sample; 39-50 per list is enough
LISTS_PER_ROOT = 4  # nlist ≈ 4·√N: the build's k-means and assignment cost grows with nlist
MEMORY_FRACTION = 0.25  # of the RAM: the default budget of a build's FAISS index
PQ_SIZES = (96, 64, 48, 32, 24, 16, 12, 8, 4)
FILL_BUFFER = 100 << 20  # a streamed batch in its three forms (BLOBs, float16, float32)
CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index: kind is flat | ivf-flat | ivf-sq8 | ivf-pq."""

    kind: str = "flat"
    nlist: int | None = None
    pq_m: int | None = None

    @property
    def description(self) -> str:
        if self.kind == "flat":
            return "IDMap2,Flat"
        tail = {"ivf-flat": "Flat", "ivf-sq8": "SQ8", "ivf-pq": f"PQ{self.pq_m}"}[self.kind]
        return f"IVF{self.nlist},{tail}"

    @property
    def approximate(self) -> bool:
        """Codes that lose precision (SQ8, PQ): searches re-rank candidates exactly."""
        return self.kind in ("ivf-sq8", "ivf-pq")


def choose_nlist(n: int) -> int:
    """A power of two near 4·√N, lowered until there are ≥ 39 training vectors per list."""
    nlist = 2 ** round(math.log2(max(1.0, LISTS_PER_ROOT * math.sqrt(n))))
    while nlist > 1 and n < MIN_TRAIN_PER_LIST * nlist:
        nlist //= 2
    return max(1, nlist)


def train_size(n: int, nlist: int) -> int:
    """How many vectors train the coarse quantizer (and the SQ8/PQ codes)."""
    return min(n, MAX_TRAIN_PER_LIST * nlist)


def code_bytes(spec: IndexSpec, dim: int) -> int:
    """Bytes per stored vector in the index: its code plus its 8-byte id."""
    code = {"flat": 4 * dim, "ivf-flat": 4 * dim, "ivf-sq8": dim}.get(spec.kind)
    return 8 + (code if code is not None else int(spec.pq_m or 1))


def build_bytes(spec: IndexSpec, n: int, dim: int) -> int:
    """Peak bytes of building `spec` over n vectors: the trained sample while training, then
    the lists (allocated once) plus ids, list numbers and one streamed batch."""
    lists = n * code_bytes(spec, dim) + (spec.nlist or 0) * dim * 4
    filling = lists + 12 * n + FILL_BUFFER
    training = train_size(n, spec.nlist or 0) * dim * 4 + FILL_BUFFER
    return max(filling, training)


def choose_spec(n: int, dim: int, memory_budget_mb: float = 0) -> IndexSpec:
    """Exact while small; then IVF-Flat, SQ8 or PQ (fewest bytes last), the first whose build
    fits `memory_budget_mb` (0: no budget); the smallest PQ when none fits."""
    if n < FLAT_MAX:
        return IndexSpec("flat")
    nlist = choose_nlist(n)
    budget = memory_budget_mb * 1e6
    specs = [IndexSpec("ivf-flat", nlist), IndexSpec("ivf-sq8", nlist)]
    specs += [IndexSpec("ivf-pq", nlist, m) for m in PQ_SIZES if dim % m == 0]
    for spec in specs:
        if not budget or build_bytes(spec, n, dim) <= budget:
            return spec
    return IndexSpec("ivf-pq", nlist, next(m for m in (8, 4, 2, 1) if dim % m == 0))


def machine_memory_mb() -> float:
    """This machine's RAM in MB, or its cgroup's memory limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = CGROUP_LIMIT.read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        pass
    return total / 1e6


def default_budget_mb() -> float:
    """The budget when `--memory-budget-mb` is not given: MEMORY_FRACTION of the RAM."""
    return round(MEMORY_FRACTION * machine_memory_mb())
