"""A library of many small files: no-op rebuild, search and verify, this checkout vs another.

Generates `--n` small distinct JPEGs in folders of 500, builds an index of them once (tiny
weights), then times whole `index` processes in turn, A B A B …: `index build` with nothing
changed, `index search` of one picture, `index verify`. With `--baseline DIR` (a checkout of an
earlier commit, e.g. `git worktree add /tmp/base <commit>`) each command also runs from that
code on a copy of the same index, and the ratio this/baseline is printed pair by pair (this
VM's speed drifts, so only ratios inside one run mean anything).

    python bench/library.py --n 50000 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "clip-vit-tiny" / "tiny_birder.pt"


def make_library(folder: Path, n: int, seed: int = 0) -> None:
    """`n` distinct 48×36 JPEGs (noise over a gradient), 500 per folder."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 48, dtype=np.float32)[None, :, None]
    for i in range(n):
        sub = folder / f"roll-{i // 500:04d}"
        if i % 500 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(0, 56, size=(36, 48, 3), dtype=np.uint8)
        pixels = (ramp + noise).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(sub / f"IMG_{i:06d}.jpg", quality=80)


def index_cmd(code: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    return [sys.executable, "-m", "indexer.cli", *args], env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare")
    parser.add_argument("--dir", default=None, help="where to write the library")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(dir=args.dir, prefix="library-"))
    try:
        photos, index = tmp / "photos", tmp / "index"
        start = time.perf_counter()
        make_library(photos, args.n)
        print(f"generated {args.n} JPEGs in {time.perf_counter() - start:.1f} s", flush=True)
        build = ["build", str(photos), "--weights", str(TINY), "--quiet"]
        first = index_cmd(args.baseline or ROOT, *build, "--index", str(index))
        print(f"first build: {timed(*first):.1f} s", flush=True)
        codes = {"this": (ROOT, index)}
        if args.baseline:
            shutil.copytree(index, tmp / "index-base")
            codes["baseline"] = (args.baseline, tmp / "index-base")
            timed(*index_cmd(ROOT, *build, "--index", str(index)))  # upgrade its schema once
        query = str(next(photos.rglob("*.jpg")))
        steps = {
            "no-op build": build,
            "search": ["search", query, "-k", "10", "--weights", str(TINY)],
            "verify": ["verify"],
        }
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for step, argv in steps.items():
                for name, (code, idx) in codes.items():
                    cmd = index_cmd(code, *argv, "--index", str(idx))
                    times.setdefault((step, name), []).append(timed(*cmd))
        for step in steps:
            ours = times[(step, "this")]
            line = f"{step:>12}: this {statistics.median(ours):.2f} s"
            if args.baseline:
                base = times[(step, "baseline")]
                ratios = [a / b for a, b in zip(ours, base, strict=True)]
                spread = f"{min(ratios):.2f}–{max(ratios):.2f}"
                line += f" · baseline {statistics.median(base):.2f} s"
                line += f" · ratio {statistics.median(ratios):.2f} ({spread})"
            print(line, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
