"""FAISS figures (prints a table): recall@10 and ms/query vs nprobe; build time vs bare FAISS.

OPENBLAS_CORETYPE=SkylakeX python bench/faiss_index.py --n 100000
OPENBLAS_CORETYPE=SkylakeX python bench/faiss_index.py --n 1000000 --build-baseline
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
from dedup import synthetic  # same clustered generator as the dedup bench

from indexer.store.vectors import (
    KMEANS_ITERATIONS,
    MAX_TRAIN_PER_LIST,
    IndexSpec,
    VectorIndex,
    choose_spec,
)


def bare_faiss_seconds(x: np.ndarray, ids: np.ndarray, spec: IndexSpec) -> float:
    """Seconds for plain FAISS to build `spec` with our recipe (same sample, same iterations)."""
    start = time.perf_counter()
    bare = faiss.index_factory(x.shape[1], spec.description, faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(bare).cp.niter = KMEANS_ITERATIONS
    take = min(len(x), MAX_TRAIN_PER_LIST * (spec.nlist or 1))
    bare.train(x[np.sort(np.random.default_rng(0).choice(len(x), take, replace=False))])
    bare.add_with_ids(x, ids)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--build-baseline", action="store_true", help="time bare faiss too")
    args = parser.parse_args()
    x, _ = synthetic(args.n, args.dim, planted=10)
    ids = np.arange(args.n, dtype=np.int64)
    spec = choose_spec(args.n, args.dim)
    faiss.Kmeans(args.dim, 16, niter=2).train(x[:5000])  # warm BLAS up: not in either timing
    rows: dict[str, object] = {"vectors": f"{args.n} x {args.dim}", "index": spec.description}
    start = time.perf_counter()
    ours = VectorIndex.create(spec, args.dim)
    ours.build(ids, x)
    ours_s = time.perf_counter() - start
    rows["build: ours (s)"] = round(ours_s, 2)
    if args.build_baseline and spec.nlist:
        bare_s = bare_faiss_seconds(x, ids, spec)
        rows["build: bare faiss, same recipe (s)"] = round(bare_s, 2)
        rows["our overhead"] = f"{100 * (ours_s / bare_s - 1):+.1f} %"
    q = x[np.random.default_rng(1).choice(args.n, args.queries, replace=False)]
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    _, truth = exact.search(q, 10)
    nprobe = 1
    while nprobe <= (spec.nlist or 1):
        start = time.perf_counter()
        _, got = ours.search(q, 10, nprobe=nprobe)
        ms = (time.perf_counter() - start) * 1000 / len(q)
        recall = np.mean([len(set(t) & set(g)) / 10 for t, g in zip(truth, got, strict=True)])
        rows[f"nprobe {nprobe:>4}: recall@10 / ms per query"] = f"{recall:.4f} / {ms:.3f}"
        if recall >= 0.999 or not spec.nlist:
            break
        nprobe *= 2
    tune = ours.tune_nprobe(q, 0.95, 10)
    rows["chosen by tune_nprobe"] = f"nprobe {tune.nprobe}, recall@10 {tune.recall_at_10:.4f}"
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
