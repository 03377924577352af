"""The GPU-box paths, run here on the CPU: device lists and encoder replicas, regrouped decode
batches, torch-trained IVF, and the exact tiled cosine join that dedup uses on a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PHOTOS, TINY_BIRDER, clustered

from indexer import gpu_math
from indexer.build.pipeline import DecodeJob, decoded_batches, encode_batches
from indexer.dedup.graph import cosine_pairs
from indexer.encoder import DeviceError, load_encoder, resolve_devices
from indexer.files import scan
from indexer.settings import Settings
from indexer.store.vectors import IndexSpec, VectorIndex


def loose_clusters(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Wide clusters, about 400 vectors each: many neighbours close to the threshold."""
    return clustered(n, dim, clusters=max(8, n // 400), seed=seed, spread=0.6)


def corpus_jobs() -> list[DecodeJob]:
    found = scan([PHOTOS])
    paths = sorted(e.path for e in found.images)
    return [DecodeJob(p, p) for p in paths]


def test_device_specs():
    assert resolve_devices("cpu,cpu") == [torch.device("cpu")] * 2
    if not torch.cuda.is_available():
        assert resolve_devices("auto") == [torch.device("cpu")]
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_devices("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_devices("cpu,gpu7")
    assert Settings.from_env(env={"PHOTO_INDEX_COMPILE": "1"}).compile is True
    assert Settings.from_env(env={"PHOTO_INDEX_COMPILE": "no"}).compile is False


def test_batches_are_regrouped_to_the_batch_size():
    text = next(PHOTOS.rglob("not-an-image.txt"))
    jobs = corpus_jobs()
    jobs.insert(3, DecodeJob(str(text), str(text)))  # a failure in the middle of a chunk
    batches = list(decoded_batches(jobs, batch_size=5, workers=2))
    keys = [k for b in batches for k in b.keys]
    failed = [f[0] for b in batches for f in b.failed]
    assert all(len(b.keys) == 5 for b in batches[:-1])
    assert all(b.pixels.shape[0] == len(b.keys) for b in batches if b.keys)
    assert sorted(keys + failed) == sorted(j.key for j in jobs)  # each image once
    assert keys == [j.key for j in jobs if j.key in set(keys)]  # in input order
    assert failed == [str(text)]


def test_replicas_give_the_same_vectors_in_order():
    jobs = corpus_jobs()
    one = load_encoder(TINY_BIRDER, device="cpu")
    two = load_encoder(TINY_BIRDER, device="cpu,cpu", replicate=True)
    assert len(two.replicas) == 2 and len(one.replicas) == 1
    a = list(encode_batches(one, jobs, batch_size=3, workers=1))
    b = list(encode_batches(two, jobs, batch_size=3, workers=1))
    assert [x.decoded.keys for x in a] == [x.decoded.keys for x in b]
    va = np.concatenate([x.vectors for x in a])
    vb = np.concatenate([x.vectors for x in b])
    assert len(va) >= 10
    np.testing.assert_allclose(va, vb, atol=1e-5)


def test_cosine_join_is_exact():
    x = loose_clusters(3000, 32)
    x[:40] = x[40:80]  # exact copies
    x[100:120] = x[200:220] + 0.02 * np.random.default_rng(1).standard_normal((20, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    old = gpu_math.JOIN_ROWS, gpu_math.JOIN_COLS
    gpu_math.JOIN_ROWS, gpu_math.JOIN_COLS = 512, 700  # many tiles, tiles not aligned
    try:
        i, j, s = gpu_math.cosine_join(x, 0.97, "cpu")
    finally:
        gpu_math.JOIN_ROWS, gpu_math.JOIN_COLS = old
    sims = x @ x.T
    ti, tj = np.nonzero(np.triu(sims >= 0.97, 1))
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == set(
        zip(ti.tolist(), tj.tolist(), strict=True)
    )
    assert len(ti) >= 60 and np.all(i < j)
    np.testing.assert_allclose(s, sims[i, j], atol=1e-5)


def test_torch_trained_ivf_finds_neighbours():
    x = loose_clusters(20_000, 64, seed=3)
    ids = np.arange(20_000) * 7 + 5  # catalog ids are not row numbers
    index = VectorIndex.create(IndexSpec("ivf-flat", 64), 64)
    index.build(ids, x, torch_device="cpu")
    assert index.ntotal == 20_000
    assert sorted(index.ids().tolist()) == ids.tolist()
    tune = index.tune_nprobe(x[:300], 0.95, 10)
    assert tune.recall_at_10 >= 0.95
    scores, found = index.search(x[:20], 1, nprobe=tune.nprobe)
    assert found[:, 0].tolist() == ids[:20].tolist()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)


def test_dedup_pairs_agree_between_search_paths():
    x = loose_clusters(6000, 48, seed=5)
    x[5000:5100] = x[:100] + 0.03 * np.random.default_rng(2).standard_normal((100, 48))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(6000)
    cpu = cosine_pairs(ids, x, 0.95, device="cpu")
    exact = gpu_math.cosine_join(x, 0.95, "cpu")
    assert cpu.info["method"] == "ivf"
    truth = set(zip(exact[0].tolist(), exact[1].tolist(), strict=True))
    assert len(truth) >= 100
    assert len(cpu.as_set() & truth) / len(truth) >= 0.99
