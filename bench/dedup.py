"""Dedup at scale (prints a markdown table): k-NN graph time and pair recall against exact search.

Synthetic clustered 768-d unit vectors (N/500 gaussian clusters, noise 0.9 per dimension, as in
bench/faiss_index.py) with planted near-duplicate pairs (cosine ≈ 0.95–0.995). Exact truth is a
blocked numpy brute force (every pair for `--exact all`, else a query sample). Baselines on the
same vectors: that brute force, and imagededup's CNN `find_duplicates` (from an encoding map) in
its own virtualenv, since it needs torchvision. `--phash N` times the pHash tier's range search.

    python bench/dedup.py --n 20000 --exact all                  # smoke run (~1 min)
    python bench/dedup.py --n 100000 --exact all --out bench/results/dedup_cpu.md
    python bench/dedup.py --n 1000000 --out bench/results/dedup_cpu.md
    python bench/dedup.py --n 20000 --imagededup-python /tmp/dedupbench-venv/bin/python
    python bench/dedup.py --n 0 --phash 200000
    python bench/dedup.py --n 0 --copies     # copies vs edits of real photos (bench/copies.py)
    PYTHONPATH=/other/checkout python bench/dedup.py --n 0 --copies   # another version's
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from indexer.dedup.cells import exact_join
from indexer.dedup.graph import UnionFind, cosine_pairs, hamming_pairs

THRESHOLD = 0.95


def synthetic(n: int, dim: int, planted: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors; the last `planted` rows are near-copies of random earlier rows."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(16, n // 500), dim), dtype=np.float32)
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        x[s:e] = centers[rng.integers(0, len(centers), e - s)]
        x[s:e] += 0.9 * rng.standard_normal((e - s, dim), dtype=np.float32)
        x[s:e] /= np.linalg.norm(x[s:e], axis=1, keepdims=True)
    src = rng.choice(n - planted, planted, replace=False)
    # noise of norm 0.1–0.33 relative to the unit vector: cosine ≈ 0.95–0.995
    scale = rng.uniform(0.1, 0.33, (planted, 1)).astype(np.float32) / np.sqrt(dim)
    copies = x[src] + scale * rng.standard_normal((planted, dim), dtype=np.float32)
    x[n - planted :] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    return x, np.stack([src, np.arange(n - planted, n)], axis=1)


def exact_pairs(x: np.ndarray, threshold: float, rows: np.ndarray | None = None) -> set:
    """Every pair ≥ threshold that involves `rows` (default: all), by blocked brute force."""
    q, j, _ = exact_join(x, threshold, 64, rows=rows)
    return {(min(a, b), max(a, b)) for a, b in zip(q.tolist(), j.tolist(), strict=True)}


def planted_recall(
    x: np.ndarray, planted: np.ndarray, found: set, threshold: float
) -> tuple[float, int]:
    """Share of the planted pairs with cosine ≥ threshold that `found` holds, and how many."""
    cos = np.einsum("ij,ij->i", x[planted[:, 0]], x[planted[:, 1]])
    over = {
        (min(a, b), max(a, b))
        for (a, b), c in zip(planted.tolist(), cos.tolist(), strict=True)
        if c >= threshold
    }
    return len(over & found) / max(1, len(over)), len(over)


class Timer:
    """Wall seconds and CPU seconds (all threads of this process)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        use = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0 = use.ru_utime + use.ru_stime
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.start
        use = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = use.ru_utime + use.ru_stime - self.cpu0


_IMAGEDEDUP = """
import json, os, resource, sys, time, numpy as np
from imagededup.methods import cnn
from imagededup.utils.logger import return_logger
x = np.load(sys.argv[1]); thr = float(sys.argv[2])
enc = {str(i): x[i] for i in range(len(x))}
# CNN() would download MobileNet weights (no network here); an encoding map needs no model.
model = cnn.CNN.__new__(cnn.CNN)
model.logger, model.verbose = return_logger(cnn.__name__), 0
def cpu():
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # its similarity pool, once joined
    return time.process_time() + kids.ru_utime + kids.ru_stime
t, c = time.perf_counter(), cpu()
dups = model.find_duplicates(
    encoding_map=enc, min_similarity_threshold=thr, scores=False, num_sim_workers=os.cpu_count()
)
el, el_cpu = time.perf_counter() - t, cpu() - c
pairs = sorted({tuple(sorted((int(a), int(b)))) for a, v in dups.items() for b in v})
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": el, "cpu": el_cpu, "pairs": pairs, "peak_rss_mb": rss}))
"""


def run_imagededup(python: str, x: np.ndarray, threshold: float) -> dict:
    """imagededup's CNN find_duplicates on the same vectors, in its own virtualenv."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, x)
        out = subprocess.run(
            [python, "-c", _IMAGEDEDUP, str(path), str(threshold)],
            capture_output=True,
            text=True,
            check=False,
            # its similarity pool forks after torch started OpenMP threads: that deadlocks
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    if out.returncode:
        raise SystemExit(f"imagededup failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["pairs"] = {tuple(p) for p in data["pairs"]}
    return data


def bench_vectors(args: argparse.Namespace, rows: dict) -> None:
    planted = args.planted or max(10, args.n // 100)
    x, truth_planted = synthetic(args.n, args.dim, planted)
    rows["vectors"] = f"{args.n:,} × {args.dim}, {planted:,} planted pairs"
    with Timer() as t:
        pairs = cosine_pairs(
            np.arange(args.n), x, args.threshold, k=16, cells=args.cells, device=args.device
        )
    ours = pairs.as_set()
    with Timer() as g:
        uf = UnionFind()
        for a, b in ours:
            uf.union(a, b)
        groups = len(uf.groups())
    info = pairs.info
    rows["ours: method"] = (
        f"IVF cell join: {info['cells']:,} cells, {info['probes']} probed per vector (sample "
        f"recall {info['sample_recall']})"
        if info["method"] == "ivf"
        else f"{info['method']} (every pair compared)"
    )
    if "seconds" in info:
        rows["ours: phases (s)"] = ", ".join(f"{k} {v:.1f}" for k, v in info["seconds"].items())
    rows["ours: k-NN graph, wall s (CPU s)"] = f"{t.wall:.1f} ({t.cpu:.1f})"
    rows["ours: union-find groups, wall s"] = f"{g.wall:.2f} ({groups:,} groups)"
    rows["ours: pairs found"] = f"{len(ours):,}"
    total_wall, total_cpu = t.wall + g.wall, t.cpu + g.cpu
    cores = os.cpu_count() or 1
    rows["16-core estimate (s)"] = (
        f"{total_cpu / 16:.1f} (CPU s / 16); {total_wall * cores / 16:.1f} (wall × {cores}/16)"
    )
    if args.exact == "all":
        with Timer() as e:
            truth = exact_pairs(x, args.threshold)
        rows["exact brute force (numpy, blocked), wall s (CPU s)"] = f"{e.wall:.1f} ({e.cpu:.1f})"
        rows["speed-up vs brute force (wall; CPU)"] = (
            f"{e.wall / t.wall:.1f}×; {e.cpu / max(t.cpu, 1e-9):.1f}×"
        )
        label = "pair recall vs exact (all pairs)"
    else:
        rng = np.random.default_rng(1)
        sample = np.union1d(
            rng.choice(args.n, min(args.n, 2000), replace=False), truth_planted[:1000, 1]
        )
        with Timer() as e:
            truth = exact_pairs(x, args.threshold, sample)
        rows[f"exact brute force of {len(sample):,} queries, wall s"] = f"{e.wall:.1f}"
        rows_set = set(sample.tolist())
        ours_sample = {p for p in ours if p[0] in rows_set or p[1] in rows_set}
        label = f"pair recall vs exact ({len(sample):,} query sample)"
        rows["precision (sample)"] = f"{len(ours_sample & truth) / max(1, len(ours_sample)):.4f}"
    rows[label] = f"{len(truth & ours) / max(1, len(truth)):.4f} of {len(truth):,} pairs"
    recall, over = planted_recall(x, truth_planted, ours, args.threshold)
    rows["recall of planted pairs ≥ threshold"] = f"{recall:.4f} of {over:,}"
    if args.imagededup_python:
        theirs = run_imagededup(args.imagededup_python, x, args.threshold)
        rows["imagededup CNN find_duplicates, wall s (CPU s incl. its pool)"] = (
            f"{theirs['seconds']:.1f} ({theirs['cpu']:.1f}), "
            f"peak RSS {theirs['peak_rss_mb']:,.0f} MB"
        )
        same = len(theirs["pairs"] & ours)
        rows["imagededup pairs / also found by ours"] = f"{len(theirs['pairs']):,} / {same:,}"
        rows["speed-up vs imagededup (wall; CPU)"] = (
            f"{theirs['seconds'] / t.wall:.1f}×; {theirs['cpu'] / max(t.cpu, 1e-9):.1f}×"
        )


def bench_phash(n: int, radius: int, rows: dict) -> None:
    rng = np.random.default_rng(2)
    hashes = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    m = max(10, n // 100)
    src = rng.choice(n - m, m, replace=False)
    flips = rng.random((m, 64)) < (rng.integers(0, radius + 1, (m, 1)) / 64)
    bits = np.packbits(flips, axis=1, bitorder="little").view(np.int64)[:, 0]
    hashes[n - m :] = hashes[src] ^ bits
    with Timer() as t:
        pairs = hamming_pairs(np.arange(n), hashes, radius)
    found = pairs.as_set()
    within = [
        (int(a), int(b))
        for a, b, f in zip(src, range(n - m, n), flips.sum(1), strict=True)
        if f <= radius
    ]
    rows["pHash codes"] = f"{n:,} random 64-bit, {m:,} planted copies (0–{radius} bits flipped)"
    rows["pHash range search (FAISS binary flat), wall s (CPU s)"] = f"{t.wall:.1f} ({t.cpu:.1f})"
    rows["pHash pairs found / planted recall"] = (
        f"{len(found):,} / {sum(p in found for p in within) / max(1, len(within)):.4f}"
    )
    rows["pHash 16-core estimate (s)"] = f"{t.cpu / 16:.1f} (CPU s / 16)"


def table(rows: dict) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows.items())])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="vectors (0: skip)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--planted", type=int, default=0, help="default: 1 %% of n")
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument("--cells", type=int, default=None, help="override the partition size")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (CLIP pairs)")
    parser.add_argument("--exact", choices=("all", "sample"), default="sample")
    parser.add_argument("--imagededup-python", default=None, help="python of imagededup's venv")
    parser.add_argument("--phash", type=int, default=0, help="also time N pHash codes")
    parser.add_argument("--radius", type=int, default=10, help="pHash Hamming threshold")
    parser.add_argument(
        "--copies", action="store_true", help="labelled copies and edits of the corpus photos"
    )
    parser.add_argument("--out", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args()
    load = os.getloadavg()
    rows: dict = {
        "machine": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"load average {load[0]:.1f} at start",
        "threshold": args.threshold,
    }
    if args.n:
        bench_vectors(args, rows)
    if args.phash:
        bench_phash(args.phash, args.radius, rows)
    if args.copies:
        from copies import bench_copies  # bench/copies.py

        bench_copies(rows)
    rows["load average at end"] = f"{os.getloadavg()[0]:.1f}"
    text = f"`python bench/dedup.py {' '.join(sys.argv[1:])}`\n\n{table(rows)}\n"
    print(text, flush=True)
    if args.out:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
