"""FAISS over inner product on L2-normalized vectors: choose, train, add/remove, tune, save.

The index is derived data (the catalog keeps every vector), so this module only has to be
fast and atomic: a save either fully replaces the previous files or leaves them untouched.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.ivf_tools import add_preassigned

from indexer.atomic import atomic_path
from indexer.devices import cuda_device
from indexer.errors import IndexFileError
from indexer.files import file_digest, write_atomic
from indexer.store import index_file

FLAT_MAX = 50_000  # below this many vectors exact search is fast enough (bench/faiss_index.py)
MIN_TRAIN_PER_LIST = 39
MAX_TRAIN_PER_LIST = 50  # k-means cost grows with the sample; 39-50 per list is enough
RETRAIN_GROWTH = 4.0
KMEANS_ITERATIONS = 10
# the layout of vectors.json; a file without one is version 1. A newer or unknown version is
# unusable here: the build rebuilds the FAISS file from the catalog, readers search exactly.
STATE_VERSION = 1


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


@dataclass
class TuneResult:
    nprobe: int | None
    recall_at_10: float
    ms_per_query: float


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def choose_nlist(n: int) -> int:
    """A power of two near 8·√N (inside 4–16·√N), lowered until ≥ 39·nlist training vectors."""
    nlist = 2 ** round(math.log2(max(1.0, 8 * math.sqrt(n))))
    while nlist > 1 and n < MIN_TRAIN_PER_LIST * nlist:
        nlist //= 2
    return max(1, nlist)


def choose_spec(n: int, dim: int, memory_budget_mb: float = 0) -> IndexSpec:
    """Exact while small; IVF-Flat when large; SQ8 then PQ when over the memory budget."""
    if n < FLAT_MAX:
        return IndexSpec("flat")
    nlist = choose_nlist(n)
    budget = memory_budget_mb * 1e6
    if not budget or n * (dim * 4 + 8) <= budget:
        return IndexSpec("ivf-flat", nlist)
    if n * (dim + 8) <= budget:
        return IndexSpec("ivf-sq8", nlist)
    for m in (96, 64, 48, 32, 24, 16, 12, 8, 4):
        if dim % m == 0 and n * (m + 8) <= budget:
            return IndexSpec("ivf-pq", nlist, m)
    return IndexSpec("ivf-pq", nlist, next(m for m in (8, 4, 2, 1) if dim % m == 0))


class VectorIndex:
    """A FAISS index whose ids are catalog content ids, plus how it was built and tuned."""

    def __init__(
        self, index: Any, spec: IndexSpec, dim: int, nprobe: int | None = None, trained_for: int = 0
    ) -> None:
        self.index = index
        self.spec = spec
        self.dim = dim
        self.nprobe = nprobe
        self.trained_for = trained_for

    @classmethod
    def create(cls, spec: IndexSpec, dim: int) -> VectorIndex:
        if spec.kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        else:
            index = faiss.index_factory(dim, spec.description, faiss.METRIC_INNER_PRODUCT)
        return cls(index, spec, dim, nprobe=None if spec.kind == "flat" else 1)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_ivf(self) -> bool:
        return self.spec.kind != "flat"

    def build(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        seed: int = 0,
        use_gpu: bool | None = None,
        torch_device: str | None = "auto",
    ) -> None:
        """Train (IVF, on a random sample) and add everything, on a GPU when there is one.

        faiss-gpu trains and adds on its GPUs; with faiss-cpu, an IVF-Flat index is trained and
        its vectors assigned by torch on `torch_device` ("auto": CUDA when torch sees a GPU;
        None: FAISS on the CPU).
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        if not self.is_ivf or self.index.is_trained:
            self.index.add_with_ids(vectors, ids)
        else:
            nlist = self.spec.nlist or 1
            rng = np.random.default_rng(seed)
            take = min(len(vectors), MAX_TRAIN_PER_LIST * nlist)
            sample = vectors[np.sort(rng.choice(len(vectors), size=take, replace=False))]
            if torch_device == "auto":
                torch_device = cuda_device()
            on_torch = torch_device and not use_gpu and self.spec.kind == "ivf-flat"
            if not (on_torch and self._build_on_torch(ids, vectors, sample, torch_device, seed)):
                faiss.extract_index_ivf(self.index).cp.niter = KMEANS_ITERATIONS
                target = faiss.index_cpu_to_all_gpus(self.index) if use_gpu else self.index
                target.train(sample)
                target.add_with_ids(vectors, ids)
                self.index = faiss.index_gpu_to_cpu(target) if use_gpu else target
        self.trained_for = len(ids)

    def _build_on_torch(
        self, ids: np.ndarray, vectors: np.ndarray, sample: np.ndarray, device: str, seed: int
    ) -> bool:
        """IVF-Flat trained and filled by torch k-means and assignment on `device`; False when
        the GPU runs out of memory (the caller then trains with FAISS on the CPU)."""
        from indexer import gpu_math  # imports torch

        nlist = self.spec.nlist or 1
        try:
            centroids = gpu_math.spherical_kmeans(sample, nlist, device, KMEANS_ITERATIONS, seed)
            labels = gpu_math.assign(vectors, centroids, device)
        except gpu_math.OutOfMemoryError:
            return False
        ivf = faiss.extract_index_ivf(self.index)
        ivf.quantizer.add(centroids)
        ivf.is_trained = True
        add_preassigned(ivf, vectors, labels, ids)
        self.index.ntotal = ivf.ntotal
        return True

    def build_sharded(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        shards: int,
        mapper: Callable[[Callable, list], Iterable[bytes]] = map,
        seed: int = 0,
    ) -> None:
        """Train the IVF quantizer once, fill `shards` copies in parallel, merge them.

        `mapper` runs `_fill_shard` over the shard arguments: builtin `map`, a thread pool's
        `map`, or a Ray-backed map for a cluster. Shards travel as serialized FAISS indexes.
        """
        if not self.is_ivf or shards <= 1:
            self.build(ids, vectors, seed=seed)
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = self.spec.nlist or 1
        rng = np.random.default_rng(seed)
        take = min(len(vectors), MAX_TRAIN_PER_LIST * nlist)
        faiss.extract_index_ivf(self.index).cp.niter = KMEANS_ITERATIONS
        self.index.train(vectors[np.sort(rng.choice(len(vectors), size=take, replace=False))])
        empty = faiss.serialize_index(self.index)
        parts = np.array_split(np.arange(len(ids)), shards)
        args = [(empty, ids[p], vectors[p]) for p in parts]
        for blob in mapper(_fill_shard, args):
            shard = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
            faiss.extract_index_ivf(self.index).merge_from(faiss.extract_index_ivf(shard), 0)
        self.index.ntotal = faiss.extract_index_ivf(self.index).ntotal
        self.trained_for = len(ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32),
            np.ascontiguousarray(ids, dtype=np.int64),
        )

    def remove(self, ids: Any) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed."""
        arr = np.ascontiguousarray(np.asarray(list(ids), dtype=np.int64))
        return int(self.index.remove_ids(arr)) if len(arr) else 0

    def ids(self) -> np.ndarray:
        """Every id stored in the index (order unspecified)."""
        if not self.is_ivf:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        ivf = faiss.extract_index_ivf(self.index)
        lists = ivf.invlists
        parts = []
        for list_no in range(lists.nlist):
            size = lists.list_size(list_no)
            if size:
                ptr = lists.get_ids(list_no)
                parts.append(faiss.rev_swig_ptr(ptr, size).copy())
                lists.release_ids(list_no, ptr)
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) [nq, k]; missing neighbours have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.is_ivf:
            faiss.extract_index_ivf(self.index).nprobe = int(nprobe or self.nprobe or 1)
        return self.index.search(queries, k)

    def needs_retrain(self, n: int) -> bool:
        """Outgrown: exact index past FLAT_MAX, or N ≫ what the IVF quantizer was trained on."""
        if not self.is_ivf:
            return n >= FLAT_MAX
        return n > RETRAIN_GROWTH * max(1, self.trained_for) or n < FLAT_MAX // 2

    def tune_nprobe(
        self, queries: np.ndarray, target_recall: float = 0.95, k: int = 10
    ) -> TuneResult:
        """Smallest power-of-two nprobe reaching recall@k ≥ target against exhaustive search."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, max(1, self.ntotal))
        if not self.is_ivf or not len(queries):
            start = time.perf_counter()
            self.search(queries, k)
            ms = (time.perf_counter() - start) * 1000 / max(1, len(queries))
            return TuneResult(None, 1.0, ms)
        nlist = self.spec.nlist or 1
        _, truth = self.search(queries, k, nprobe=nlist)  # all lists = exact for these codes
        best = TuneResult(nlist, 1.0, 0.0)
        nprobe = 1
        while nprobe <= nlist:
            start = time.perf_counter()
            _, got = self.search(queries, k, nprobe=nprobe)
            ms = (time.perf_counter() - start) * 1000 / len(queries)
            recall = _recall(truth, got)
            if recall >= target_recall or nprobe == nlist:
                best = TuneResult(nprobe, recall, ms)
                break
            nprobe *= 2
        self.nprobe = best.nprobe
        return best

    # ---------------------------------------------------------------------- files
    def save(self, path: str | Path, state: dict[str, Any]) -> None:
        """Atomically write `path` (FAISS) and `path`.json (state + checksum of the FAISS file).

        Streamed through Python so a full disk is an OSError with its errno (ENOSPC), and the
        temps of a killed save are removed by the next one (`atomic.atomic_path`).
        """
        path = Path(path)
        try:
            with atomic_path(path, durable=True) as tmp_index:
                with open(tmp_index, "wb") as fh:
                    faiss.write_index(self.index, faiss.PyCallbackIOWriter(fh.write))
                doc = {
                    **state,
                    "state_version": STATE_VERSION,
                    "spec": asdict(self.spec),
                    "dim": self.dim,
                    "nprobe": self.nprobe,
                    "trained_for": self.trained_for,
                    "ntotal": self.ntotal,
                    "faiss_bytes": tmp_index.stat().st_size,
                    "faiss_blake2b": _digest(tmp_index),
                }
                write_atomic(_state_path(path), json.dumps(doc), durable=True)
        except (OSError, RuntimeError) as exc:
            if getattr(exc, "errno", None):  # keep the errno: the CLI says what to free or fix
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            raise OSError(
                f"{path}: could not save the FAISS index ({exc}); the previous index is unchanged"
            ) from None


def load(
    path: str | Path, expected: index_file.Expected | None = None
) -> tuple[VectorIndex, dict[str, Any]]:
    """Read an index and its state; IndexFileError if the pair is corrupt, mismatched, or
    disagrees with what the catalog `expected` (index_file: checked before FAISS reads it)."""
    path = Path(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(str(path))
    state = index_file.read_state(_state_path(path))
    spec, dim = _spec(path, state)
    index = index_file.read_index(path, state, expected)
    vi = VectorIndex(index, spec, dim, state.get("nprobe"), state.get("trained_for", 0))
    _check_kind(path, vi)
    return vi, state


def _spec(path: Path, state: dict[str, Any]) -> tuple[IndexSpec, int]:
    """The index spec of a state this version can read; IndexFileError for any other."""
    version = state.get("state_version", 1)
    if version != STATE_VERSION:
        raise IndexFileError(
            f"{path}: its state is version {version!r}, this photo-index reads {STATE_VERSION}"
        )
    try:
        spec, dim = IndexSpec(**state["spec"]), int(state["dim"])
        spec.description  # noqa: B018 - a kind this version does not know raises KeyError
    except (KeyError, TypeError, ValueError):
        raise IndexFileError(f"{path}: its state does not describe an index") from None
    return spec, dim


def _check_kind(path: Path, vi: VectorIndex) -> None:
    """The FAISS object is the kind of index its state names (an exact index with ids, or an
    IVF with the state's number of lists), so every method here works on it."""
    try:
        if vi.is_ivf:
            ok = faiss.extract_index_ivf(vi.index).nlist == vi.spec.nlist
        else:
            ok = isinstance(vi.index, faiss.IndexIDMap2)
    except RuntimeError:
        ok = False
    if not ok or vi.index.d != vi.dim:
        raise IndexFileError(f"{path}: is not the {vi.spec.description} index its state names")


def _fill_shard(args: tuple[np.ndarray, np.ndarray, np.ndarray]) -> bytes:
    """Add one shard's vectors to a copy of the trained, empty index; return it serialized."""
    empty, ids, vectors = args
    index = faiss.deserialize_index(np.asarray(empty, dtype=np.uint8))
    index.add_with_ids(vectors, ids)
    return faiss.serialize_index(index).tobytes()


def _state_path(path: Path) -> Path:
    return path.with_name(path.stem + ".json")


def _digest(path: Path) -> str:
    return file_digest(path, "blake2b-128")  # what index_file.read_index checks


def _recall(truth: np.ndarray, got: np.ndarray) -> float:
    hits = total = 0
    for t, g in zip(truth, got, strict=True):
        t = set(t[t >= 0].tolist())
        hits += len(t & set(g.tolist()))
        total += len(t)
    return hits / total if total else 1.0
