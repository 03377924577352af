"""The cost of a rescan: a no-op `index build` against a bare walk + stat of the same tree.

Paired runs, in turn, each a fresh process: (a) `os.walk` + `os.stat` of every file, the least
any rescan must do; (b) `index build` of the tree with nothing changed; (c) start-up: the same
no-op `index build` of a one-photo library (imports, the encoder, opening the catalog and the
FAISS file, recording the run: everything but the per-file work). The target is b ≤ 2·a + c.
Prints each run's wall and CPU seconds and peak RSS, and per round the ratios (b − c) / a in
wall and in CPU seconds (CPU seconds hold still on a shared box; wall seconds do not).

    python bench/rescan.py --photos DIR --index DIR [--weights W] [--rounds 3]

The index must hold the photos already (e.g. `python bench/library.py`'s library after one build,
or `make_library` below and one `index build`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from scale import measured

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "clip-vit-tiny" / "tiny_birder.pt"
WALK = """
import os, sys
n = 0
for root, dirs, files in os.walk(sys.argv[1]):
    for name in files:
        os.stat(os.path.join(root, name))
        n += 1
print(n)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--weights", default=str(TINY))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "indexer.cli", "build"]
    weights = ["--weights", args.weights, "--quiet"]
    rounds = []
    with tempfile.TemporaryDirectory(prefix="rescan-") as tmp:
        one, other = Path(tmp) / "one", Path(tmp) / "index"
        one.mkdir()
        first = next(p for p in sorted(Path(args.photos).rglob("*")) if p.is_file())
        shutil.copy2(first, one / first.name)
        measured([*cli, str(one), "--index", str(other), *weights])  # its first build: untimed
        runs = {
            "walk_stat": [sys.executable, "-c", WALK, args.photos],
            "noop_build": [*cli, args.photos, "--index", args.index, *weights],
            "startup": [*cli, str(one), "--index", str(other), *weights],
        }
        for _ in range(args.rounds):
            got = {name: measured(cmd) for name, cmd in runs.items()}
            if got["noop_build"]["rc"] not in (0, 3):
                raise SystemExit(f"index build failed: {got['noop_build']['stderr']}")
            keys = ("seconds", "cpu_seconds", "peak_rss_mb")
            row: dict = {name: {k: run[k] for k in keys} for name, run in got.items()}
            for unit in ("seconds", "cpu_seconds"):
                a, b, c = (got[k][unit] for k in ("walk_stat", "noop_build", "startup"))
                row[f"ratio_{unit}"] = round((b - c) / a, 2)
            print(json.dumps(row), flush=True)
            rounds.append(row)
    medians = {k: statistics.median(r[k]["seconds"] for r in rounds) for k in runs}
    ratios = {u: [r[f"ratio_{u}"] for r in rounds] for u in ("seconds", "cpu_seconds")}
    print(json.dumps({"median_seconds": medians, "ratios": ratios}))


if __name__ == "__main__":
    main()
