"""Dedup at scale: k-NN graph time and pair recall on synthetic 768-d vectors (prints a table).

Planted near-duplicate pairs (cosine ≈ 0.97–0.99) hide among clustered vectors. Recall is
measured against exact search (brute force over all vectors, or over a query sample for 1M),
and optionally against imagededup's CNN path run in its own virtualenv on the same vectors.

    python bench/dedup.py --n 100000 --exact
    python bench/dedup.py --n 1000000
    python bench/dedup.py --n 100000 --imagededup-python /tmp/dd-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from indexer.dedup.graph import cosine_pairs

THRESHOLD = 0.95


def synthetic(n: int, dim: int, planted: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors; the last `planted` rows are near-copies of random earlier rows."""
    rng = np.random.default_rng(seed)
    clusters = max(16, n // 500)
    centers = rng.standard_normal((clusters, dim), dtype=np.float32)
    x = np.empty((n, dim), np.float32)
    step = 100_000
    for s in range(0, n, step):
        e = min(n, s + step)
        x[s:e] = centers[rng.integers(0, clusters, e - s)]
        x[s:e] += 0.9 * rng.standard_normal((e - s, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    src = rng.choice(n - planted, planted, replace=False)
    noise = rng.uniform(0.1, 0.2, (planted, 1)).astype(np.float32)
    copies = x[src] + noise * rng.standard_normal((planted, dim), dtype=np.float32) / np.sqrt(dim)
    x[n - planted :] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    pairs = np.stack([src, np.arange(n - planted, n)], axis=1)
    return x, pairs


def exact_pairs(x: np.ndarray, threshold: float, queries: np.ndarray | None = None) -> set:
    """All pairs ≥ threshold by brute force (k-NN with a generous k) over `queries` rows."""
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    rows = np.arange(len(x)) if queries is None else queries
    found = set()
    for s in range(0, len(rows), 4096):
        q = rows[s : s + 4096]
        sims, nb = index.search(x[q], 32)
        for qi, srow, nrow in zip(q, sims, nb, strict=True):
            for sim, j in zip(srow, nrow, strict=True):
                if j != qi and sim >= threshold:
                    found.add((min(qi, j), max(qi, j)))
    return found


def run_imagededup(python: str, x: np.ndarray, threshold: float) -> tuple[float, set]:
    """Time imagededup's CNN find_duplicates on the same vectors (encoding map) in its venv."""
    code = """
import json, os, sys, time, numpy as np
from imagededup.methods import cnn
from imagededup.utils.logger import return_logger
x = np.load(sys.argv[1]); thr = float(sys.argv[2])
enc = {str(i): x[i] for i in range(len(x))}
# CNN() would download MobileNet weights (no network here); an encoding map needs no model.
model = cnn.CNN.__new__(cnn.CNN)
model.logger, model.verbose = return_logger(cnn.__name__), 0
t = time.perf_counter()
dups = model.find_duplicates(
    encoding_map=enc, min_similarity_threshold=thr, scores=False, num_sim_workers=os.cpu_count()
)
el = time.perf_counter() - t
pairs = sorted({tuple(sorted((int(a), int(b)))) for a, v in dups.items() for b in v})
print(json.dumps({"seconds": el, "pairs": pairs}))
"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, x)
        out = subprocess.run(
            [python, "-c", code, str(path), str(threshold)],
            capture_output=True,
            text=True,
            check=False,
            # its similarity pool forks after torch started OpenMP threads: that deadlocks
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    if out.returncode:
        raise SystemExit(f"imagededup failed:\n{out.stderr[-2000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["seconds"], {tuple(p) for p in data["pairs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--planted", type=int, default=0, help="default: 1 %% of n")
    parser.add_argument("--exact", action="store_true", help="exact pairs over all vectors")
    parser.add_argument("--imagededup-python", default=None)
    args = parser.parse_args()
    planted = args.planted or max(10, args.n // 100)
    t0 = time.perf_counter()
    x, truth_planted = synthetic(args.n, args.dim, planted)
    gen_s = time.perf_counter() - t0
    start = time.perf_counter()
    a, b, _ = cosine_pairs(np.arange(args.n), x, THRESHOLD, k=16)
    ours_s = time.perf_counter() - start
    ours = set(zip(a.tolist(), b.tolist(), strict=True))
    planted_set = {(min(p), max(p)) for p in truth_planted.tolist()}
    rows = {
        "vectors": f"{args.n} x {args.dim} (generated in {gen_s:.1f} s), {planted} planted pairs",
        "threads": faiss.omp_get_max_threads(),
        "ours: k-NN graph + pairs (s)": round(ours_s, 2),
        "ours: pairs found": len(ours),
        "recall of planted pairs": round(len(planted_set & ours) / len(planted_set), 4),
    }
    if args.exact:
        start = time.perf_counter()
        truth = exact_pairs(x, THRESHOLD)
        rows["exact brute force (s)"] = round(time.perf_counter() - start, 2)
        rows["pair recall vs exact"] = round(len(truth & ours) / max(1, len(truth)), 4)
    else:
        sample = np.random.default_rng(1).choice(args.n, min(args.n, 2000), replace=False)
        sample = np.union1d(sample, truth_planted[:1000, 1])
        truth = exact_pairs(x, THRESHOLD, sample)
        rows["pair recall vs exact (query sample)"] = round(
            len(truth & ours) / max(1, len(truth)), 4
        )
    cores = os.cpu_count() or 2
    rows["projected seconds on 16 cores"] = round(ours_s * cores / 16, 1)
    show(rows)
    if args.imagededup_python:
        rows = {}
        their_s, theirs = run_imagededup(args.imagededup_python, x, THRESHOLD)
        rows["imagededup CNN find_duplicates (s)"] = round(their_s, 2)
        rows["imagededup pairs / same pairs as ours"] = f"{len(theirs)} / {len(theirs & ours)}"
        rows["speed ratio (imagededup / ours)"] = round(their_s / ours_s, 1)
    show(rows)


def show(rows: dict) -> None:
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}", flush=True)


if __name__ == "__main__":
    main()
