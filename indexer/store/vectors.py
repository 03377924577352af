"""FAISS over inner product on L2-normalized vectors: choose, train, add/remove, tune, save.

The index is derived data (the catalog keeps every vector), so this module only has to be
fast and atomic: a save either fully replaces the previous files or leaves them untouched.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.atomic import atomic_path, write_atomic
from indexer.devices import cuda_device
from indexer.errors import IndexFileError
from indexer.files import hasher
from indexer.store import index_file, ivf_fill
from indexer.store.exact import VectorSource, rerank
from indexer.store.index_choice import (  # noqa: F401 - the index choice, named here too
    FLAT_MAX,
    MAX_TRAIN_PER_LIST,
    MIN_TRAIN_PER_LIST,
    IndexSpec,
    choose_nlist,
    choose_spec,
    train_size,
)
from indexer.store.ivf_fill import KMEANS_ITERATIONS, Chunks

RETRAIN_GROWTH = 4.0
RERANK = 8  # an SQ8/PQ search re-ranks k × RERANK candidates by their stored vectors
# the layout of vectors.json; a file without one is version 1. A newer or unknown version is
# unusable here: the build rebuilds the FAISS file from the catalog, readers search exactly.
STATE_VERSION = 1


@dataclass
class TuneResult:
    nprobe: int | None
    recall_at_10: float
    ms_per_query: float


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


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
        self.exact: VectorSource | None = None  # set: SQ8/PQ hits are re-ranked exactly
        self.read_only = False  # memory-mapped from its file: never modified

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
        """Train (IVF, on a random sample) and add arrays already in memory (see `fill`)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        take = train_size(len(vectors), self.spec.nlist or 0) if self.is_ivf else 0
        rows = np.random.default_rng(seed).choice(len(vectors), size=take, replace=False)
        step = 50_000

        def chunks() -> Iterable[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(ids), step):
                yield ids[start : start + step], vectors[start : start + step]

        self.fill(chunks, vectors[np.sort(rows)], seed, use_gpu, torch_device)

    def fill(
        self,
        chunks: Chunks,
        sample: np.ndarray,
        seed: int = 0,
        use_gpu: bool | None = None,
        torch_device: str | None = "auto",
    ) -> None:
        """Train an IVF index on `sample`, then add the stream `chunks` (called twice: each
        list is allocated once, `ivf_fill`); an exact index just adds the stream.

        faiss-gpu trains on its GPUs; with faiss-cpu, an IVF-Flat index is trained and its
        vectors assigned by torch on `torch_device` ("auto": CUDA when torch sees a GPU;
        None: FAISS on the CPU).
        """
        if not self.is_ivf or self.index.is_trained:
            for ids, x in chunks():
                self.add(ids, x)
            self.trained_for = self.ntotal
            return
        use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        device = cuda_device() if torch_device == "auto" else torch_device
        self.index, assign = ivf_fill.train(
            self.index, self.spec, sample, seed=seed, use_gpu=use_gpu, torch_device=device
        )
        del sample
        ivf_fill.fill(self.index, chunks, assign)
        self.trained_for = self.ntotal

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
        rng = np.random.default_rng(seed)
        take = train_size(len(vectors), self.spec.nlist or 1)
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
        self._writable()
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32),
            np.ascontiguousarray(ids, dtype=np.int64),
        )

    def remove(self, ids: Any) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed."""
        self._writable()
        arr = np.ascontiguousarray(np.asarray(list(ids), dtype=np.int64))
        return int(self.index.remove_ids(arr)) if len(arr) else 0

    def _writable(self) -> None:
        if self.read_only:  # a write to the mapping would crash the process
            raise ValueError("a memory-mapped index is read-only: load it with mmap=False")

    def ids(self) -> np.ndarray:
        """Every id stored in the index (order unspecified)."""
        if not self.is_ivf:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return self.lists()[0]

    def lists(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, the inverted list of each) of an IVF index, read list by list (a memory-mapped
        index reads only the ids' pages)."""
        lists = faiss.extract_index_ivf(self.index).invlists
        ids, where = [np.zeros(0, np.int64)], [np.zeros(0, np.int32)]
        for list_no in range(lists.nlist):
            size = lists.list_size(list_no)
            if size:
                ptr = lists.get_ids(list_no)
                ids.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64))
                lists.release_ids(list_no, ptr)
                where.append(np.full(size, list_no, np.int32))
        return np.concatenate(ids), np.concatenate(where)

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) [nq, k]; missing neighbours have id -1. SQ8/PQ codes with an `exact`
        source fetch k × RERANK candidates and rank them by their stored vectors."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.is_ivf:
            faiss.extract_index_ivf(self.index).nprobe = int(nprobe or self.nprobe or 1)
        if self.exact is None or not self.spec.approximate:
            return self.index.search(queries, k)
        _, candidates = self.index.search(queries, min(max(1, self.ntotal), k * RERANK))
        return rerank(queries, candidates, k, self.exact)

    def needs_retrain(self, n: int) -> bool:
        return outgrown(self.spec, self.trained_for, n)

    def tune_nprobe(
        self,
        queries: np.ndarray,
        target_recall: float = 0.95,
        k: int = 10,
        truth: np.ndarray | None = None,
    ) -> TuneResult:
        """Smallest power-of-two nprobe reaching recall@k ≥ target against `truth` (ids [nq, k]
        of the exact neighbours; default: this index searched over all its lists)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, max(1, self.ntotal))
        if not self.is_ivf or not len(queries):
            start = time.perf_counter()
            self.search(queries, k)
            ms = (time.perf_counter() - start) * 1000 / max(1, len(queries))
            return TuneResult(None, 1.0, ms)
        nlist = self.spec.nlist or 1
        if truth is None:
            _, truth = self.search(queries, k, nprobe=nlist)  # all lists: exact for these codes
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
            nprobe = min(nprobe * 2, nlist)
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
                digest = hasher("blake2b-128")
                with open(tmp_index, "wb") as fh:

                    def write(data: bytes) -> int:  # hashed as written: no second read
                        digest.update(data)
                        return fh.write(data)

                    faiss.write_index(self.index, faiss.PyCallbackIOWriter(write))
                st = tmp_index.stat()
                doc = {
                    **state,
                    "state_version": STATE_VERSION,
                    "spec": asdict(self.spec),
                    "dim": self.dim,
                    "nprobe": self.nprobe,
                    "trained_for": self.trained_for,
                    "ntotal": self.ntotal,
                    "faiss_bytes": st.st_size,
                    "faiss_mtime_ns": st.st_mtime_ns,
                    "faiss_fingerprint": index_file.fingerprint(tmp_index, st.st_size),
                    "faiss_blake2b": digest.hexdigest(),
                }
                write_atomic(_state_path(path), json.dumps(doc), durable=True)
        except (OSError, RuntimeError) as exc:
            if getattr(exc, "errno", None):  # keep the errno: the CLI says what to free or fix
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            raise OSError(
                f"{path}: could not save the FAISS index ({exc}); the previous index is unchanged"
            ) from None


def load(
    path: str | Path,
    expected: index_file.Expected | None = None,
    *,
    mmap: bool = False,
    full_check: bool = False,
) -> tuple[VectorIndex, dict[str, Any]]:
    """Read an index and its state; IndexFileError if the pair is corrupt, mismatched, or
    disagrees with what the catalog `expected` (index_file: checked before FAISS reads it).

    `mmap` maps the lists from the file instead of reading them (for readers: pages come in
    as searches touch them; the index is then read-only). `full_check` hashes the whole file
    (`index verify`); otherwise size, mtime and fingerprint suffice (index_file.matches).
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(str(path))
    state = index_file.read_state(_state_path(path))
    spec, dim = _spec(path, state)
    index = index_file.read_index(path, state, expected, mmap=mmap, full_check=full_check)
    vi = VectorIndex(index, spec, dim, state.get("nprobe"), state.get("trained_for", 0))
    vi.read_only = mmap
    _check_kind(path, vi)
    return vi, state


def outgrown(spec: IndexSpec, trained_for: int, n: int) -> bool:
    """Exact index past FLAT_MAX, or N ≫ what the IVF quantizer was trained on."""
    if spec.kind == "flat":
        return n >= FLAT_MAX
    return n > RETRAIN_GROWTH * max(1, trained_for) or n < FLAT_MAX // 2


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


def _recall(truth: np.ndarray, got: np.ndarray) -> float:
    hits = total = 0
    for t, g in zip(truth, got, strict=True):
        t = set(t[t >= 0].tolist())
        hits += len(t & set(g.tolist()))
        total += len(t)
    return hits / total if total else 1.0
