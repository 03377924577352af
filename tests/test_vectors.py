"""FAISS index choice, IVF recall at the tuned nprobe, removal, atomic saves and bad files."""

from __future__ import annotations

import errno
import math
import os

import faiss
import numpy as np
import pytest
from conftest import clustered
from mounts import tmpfs

from indexer.store import vectors
from indexer.store.vectors import IndexFileError, IndexSpec, VectorIndex, choose_spec


def test_spec_follows_collection_size_and_budget():
    assert choose_spec(1000, 768).kind == "flat"
    big = choose_spec(1_000_000, 768)
    assert big.kind == "ivf-flat" and big.description == f"IVF{big.nlist},Flat"
    root = math.sqrt(1_000_000)
    assert 4 * root <= big.nlist <= 16 * root and big.nlist & (big.nlist - 1) == 0
    assert choose_spec(1_000_000, 768, memory_budget_mb=1500).kind == "ivf-sq8"
    pq = choose_spec(1_000_000, 768, memory_budget_mb=100)
    assert pq.kind == "ivf-pq" and 768 % pq.pq_m == 0 and 1_000_000 * pq.pq_m <= 100e6
    # never fewer than 39 training vectors per list
    for n in (60_000, 100_000, 400_000):
        assert n >= 39 * vectors.choose_nlist(n)


def test_flat_finds_itself_and_forgets_removed():
    x = clustered(2000, 64)
    ids = np.arange(10_000, 12_000, dtype=np.int64)
    index = VectorIndex.create(choose_spec(len(x), 64), 64)
    index.build(ids, x)
    scores, got = index.search(x[:5], 3)
    assert list(got[:, 0]) == list(ids[:5]) and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert index.remove(ids[:5]) == 5 and index.ntotal == 1995
    _, got = index.search(x[:5], 3)
    assert not set(got.ravel()) & set(ids[:5].tolist())
    assert sorted(index.ids().tolist()) == ids[5:].tolist()


def test_ivf_reaches_target_recall_at_tuned_nprobe(tmp_path):
    n, dim = 30_000, 64
    x = clustered(n, dim, clusters=300)
    ids = np.arange(n, dtype=np.int64) * 3 + 7
    spec = IndexSpec("ivf-flat", vectors.choose_nlist(n))
    assert n >= 39 * spec.nlist
    index = VectorIndex.create(spec, dim)
    index.build(ids, x)
    queries = x[np.random.default_rng(1).choice(n, 300, replace=False)]
    tune = index.tune_nprobe(queries, target_recall=0.95, k=10)
    assert tune.recall_at_10 >= 0.95 and 1 <= tune.nprobe < spec.nlist
    # independently: exact search by brute force agrees at that nprobe
    exact = faiss.IndexFlatIP(dim)
    exact.add(x)
    _, truth = exact.search(queries, 10)
    _, got = index.search(queries, 10)
    recall = np.mean([len(set(ids[t]) & set(g)) / 10 for t, g in zip(truth, got, strict=True)])
    assert recall >= 0.95
    assert sorted(index.ids().tolist()) == sorted(ids.tolist())
    # save / load round trip keeps ids, nprobe and results
    path = tmp_path / "vectors.faiss"
    index.save(path, {"generation": 4})
    loaded, state = vectors.load(path)
    assert state["generation"] == 4 and loaded.nprobe == tune.nprobe
    assert np.array_equal(loaded.search(queries, 10)[1], got)
    assert loaded.needs_retrain(5 * n) and not loaded.needs_retrain(n)


def test_failed_save_keeps_previous_index(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, 256):  # a real full disk: the save fails with ENOSPC
        small = VectorIndex.create(IndexSpec(), 32)
        small.build(np.arange(500), clustered(500, 32))
        path = disk / "vectors.faiss"
        small.save(path, {"generation": 1})
        big = VectorIndex.create(IndexSpec(), 32)
        big.build(np.arange(5000), clustered(5000, 32))  # 640 KB: does not fit
        with pytest.raises(OSError) as failed:
            big.save(path, {"generation": 2})
        assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(path)
        loaded, state = vectors.load(path)
        assert loaded.ntotal == 500 and state["generation"] == 1
        assert sorted(p.name for p in disk.iterdir()) == ["vectors.faiss", "vectors.json"]


def test_corrupt_or_truncated_file_is_detected(tmp_path):
    index = VectorIndex.create(IndexSpec(), 16)
    index.build(np.arange(50), clustered(50, 16))
    path = tmp_path / "vectors.faiss"
    index.save(path, {"generation": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFileError, match="truncated"):
        vectors.load(path)
    path.write_bytes(data)
    (tmp_path / "vectors.json").unlink()
    with pytest.raises(IndexFileError, match="state file"):
        vectors.load(path)


def held_out(n: int, dim: int, extra: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n stored vectors, `extra` queries of the same clusters that are not stored, and the
    rows of each query's 10 exact nearest stored vectors."""
    x = clustered(n + extra, dim, clusters=200, spread=0.6)
    stored, queries = x[:n], x[n:]
    exact = faiss.IndexFlatIP(dim)
    exact.add(stored)
    return stored, queries, exact.search(queries, 10)[1]


def recall(truth: np.ndarray, got: np.ndarray) -> float:
    hits = [len(set(t) & set(g)) for t, g in zip(truth.tolist(), got.tolist(), strict=True)]
    return sum(hits) / truth.size


@pytest.mark.parametrize("spec", [IndexSpec("ivf-sq8", 64), IndexSpec("ivf-pq", 64, 16)])
def test_compressed_codes_are_reranked_by_the_stored_vectors(spec):
    n, dim = 20_000, 64
    stored, queries, truth = held_out(n, dim)
    ids = np.arange(n, dtype=np.int64) * 5 + 3  # catalog ids are not row numbers
    index = VectorIndex.create(spec, dim)
    index.build(ids, stored)
    index.exact = lambda want: (np.sort(want), stored[(np.sort(want) - 3) // 5])
    tune = index.tune_nprobe(queries, 0.95, 10, truth=ids[truth])
    assert tune.recall_at_10 >= 0.95 and tune.nprobe < spec.nlist
    scores, got = index.search(queries, 10)
    assert recall(ids[truth], got) >= 0.95
    exact_scores = np.einsum("ij,ij->i", stored[(got[:, 0] - 3) // 5], queries)
    np.testing.assert_allclose(scores[:, 0], exact_scores, atol=1e-5)  # stored, not code, scores
    index.exact = None  # the codes alone rank worse: what re-ranking is for
    _, coded = index.search(queries, 10, nprobe=tune.nprobe)
    assert recall(ids[truth], coded) < recall(ids[truth], got)


def test_readers_trust_size_mtime_and_fingerprint_verify_reads_every_byte(tmp_path):
    index = VectorIndex.create(IndexSpec(), 64)
    index.build(np.arange(12_000), clustered(12_000, 64))  # 3 MB: a middle past both ends
    path = tmp_path / "vectors.faiss"
    index.save(path, {"generation": 1})
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle, size and mtime kept
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    vectors.load(path, mmap=True)  # a reader's check: cheap at any size, blind to this byte
    with pytest.raises(IndexFileError, match="checksum"):
        vectors.load(path, full_check=True)  # `index verify`
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # e.g. a copied folder
    with pytest.raises(IndexFileError, match="checksum"):
        vectors.load(path)  # another mtime: the whole file is hashed
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # the same bytes, a new mtime: still the file of its state
    assert vectors.load(path)[0].ntotal == 12_000


def test_a_memory_mapped_index_answers_and_refuses_writes(tmp_path):
    x = clustered(60_000, 32)
    index = VectorIndex.create(choose_spec(len(x), 32), 32)
    index.build(np.arange(60_000), x)
    path = tmp_path / "vectors.faiss"
    index.save(path, {"generation": 1})
    mapped, _ = vectors.load(path, mmap=True)
    assert np.array_equal(mapped.search(x[:50], 10, nprobe=8)[1], index.search(x[:50], 10, 8)[1])
    assert np.array_equal(np.sort(mapped.ids()), np.arange(60_000))
    with pytest.raises(ValueError, match="read-only"):
        mapped.remove([1])  # writing to the mapping would crash the process
