"""The vector stages of bench/gpu.sh: FAISS IVF build (torch on the GPU, FAISS on the CPU, FAISS
on the GPU with cuVS) and the dedup pair search (our exact join on the GPU or the CPU cell join,
FAISS GPU k-NN, cuVS CAGRA) on the same synthetic clustered vectors as bench/dedup.py."""

from __future__ import annotations

import time

import numpy as np
from dedup import planted_recall, synthetic
from faiss_index import bare_faiss_seconds
from gpu_stages import Budget

from indexer.dedup.graph import cosine_pairs
from indexer.store.vectors import VectorIndex, choose_spec


def vectors(table, state: dict, vecs: int) -> None:
    start = time.perf_counter()
    state["x"], state["planted"] = synthetic(vecs, 768, planted=max(10, vecs // 100))
    table.add(f"generated {vecs:,} × 768 clustered vectors", f"{time.perf_counter() - start:.1f} s")


def faiss_build(table, state: dict, torch_device: str | None) -> None:
    """Our build (torch on the GPU, or FAISS on the CPU) and, on the CPU, bare FAISS."""
    x = state["x"]
    vecs = len(x)
    spec = choose_spec(vecs, 768)
    ids = np.arange(vecs)
    how = "torch k-means on the GPU + add_preassigned" if torch_device else "FAISS on the CPU"
    start = time.perf_counter()
    index = VectorIndex.create(spec, 768)
    index.build(ids, x, use_gpu=False, torch_device=torch_device)
    built = time.perf_counter() - start
    tune = index.tune_nprobe(x[:500], 0.95, 10)
    table.add(
        f"FAISS {spec.description} build, {vecs:,} vectors, {how}",
        f"{built:.1f} s; tuned nprobe {tune.nprobe}: recall@10 {tune.recall_at_10:.3f}, "
        f"{tune.ms_per_query:.3f} ms/query",
    )
    if spec.nlist and not torch_device:
        bare_s = bare_faiss_seconds(x, ids, spec)
        table.add(
            "  bare FAISS on the CPU, same recipe",
            f"{bare_s:.1f} s (our overhead {100 * (built / bare_s - 1):+.1f} %)",
        )


def dedup_pairs(table, state: dict, device: str) -> None:
    x, planted = state["x"], state["planted"]
    start = time.perf_counter()
    pairs = cosine_pairs(np.arange(len(x)), x, 0.95, device=device)
    took = time.perf_counter() - start
    found = pairs.as_set()
    recall, _ = planted_recall(x, planted, found, 0.95)
    table.add(
        f"dedup pairs ≥ 0.95, {len(x):,} vectors, {pairs.info['method']}",
        f"{took:.1f} s; {len(found):,} pairs; planted recall {recall:.4f}",
    )


def faiss_gpu(table, state: dict, budget: Budget) -> None:
    """IVF train + add with FAISS on the GPU vs torch k-means, and the dedup k-NN join with
    FAISS GPU (flat fp16, cuVS CAGRA) vs our exact torch join (the "dedup on the GPU" row)."""
    import faiss

    if faiss.get_num_gpus() == 0:
        table.add(
            "FAISS on the GPU (faiss-gpu-cu13-cuvs)",
            "skipped: this faiss sees no GPU (install the [gpu] extra: docs/gpu.md)",
        )
        return
    x, planted = state["x"], state["planted"]
    ids = np.arange(len(x))
    spec = choose_spec(len(x), x.shape[1])
    for how, use_gpu in (("FAISS on the GPU", True), ("torch on the GPU", False)):
        start = time.perf_counter()
        index = VectorIndex.create(spec, x.shape[1])
        index.build(ids, x, use_gpu=use_gpu, torch_device="cuda")
        took = time.perf_counter() - start
        tune = index.tune_nprobe(x[:500], 0.95, 10)
        table.add(
            f"IVF train + add, {spec.description}, {len(x):,} vectors, {how}",
            f"{took:.1f} s; nprobe {tune.nprobe}: recall@10 {tune.recall_at_10:.3f}",
        )
    res = faiss.StandardGpuResources()
    cfg = faiss.GpuIndexFlatConfig()
    cfg.useFloat16 = True
    flat = faiss.GpuIndexFlatIP(res, x.shape[1], cfg)
    _knn_join(table, "FAISS GPU flat fp16", lambda: flat.add(x) or flat, x, planted)
    if hasattr(faiss, "GpuIndexCagra") and budget.allows(table, "k-NN join, cuVS CAGRA", 90):
        cagra = faiss.GpuIndexCagra(res, x.shape[1], faiss.METRIC_INNER_PRODUCT)
        _knn_join(table, "cuVS CAGRA", lambda: cagra.train(x) or cagra, x, planted)  # train builds


def _knn_join(table, name: str, build, x: np.ndarray, planted, k: int = 16) -> None:
    """Self k-NN (k=16) of every vector from the index `build()` fills, pairs at cosine >= 0.95,
    recall of the planted pairs; build and search timed together."""
    start = time.perf_counter()
    index = build()
    found: set[tuple[int, int]] = set()
    for r0 in range(0, len(x), 65536):
        sims, nbrs = index.search(x[r0 : r0 + 65536], k)
        for i, j in zip(*np.nonzero(sims >= 0.95), strict=True):
            a, b = r0 + int(i), int(nbrs[i, j])
            if a != b and b >= 0:
                found.add((min(a, b), max(a, b)))
    took = time.perf_counter() - start
    recall, _ = planted_recall(x, planted, found, 0.95)
    table.add(
        f"k-NN join ≥ 0.95, {len(x):,} vectors, {name}, k={k}",
        f"{took:.1f} s; {len(found):,} pairs; planted recall {recall:.4f}",
    )
