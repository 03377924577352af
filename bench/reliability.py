"""Reliability table: the hostile corpus and ≥ 20 SIGKILLs at random moments of a build.

Prints: inputs tried, indexed, ledgered, crashes, hangs, kills survived, images lost, and the
catalog ⇄ FAISS check after every rerun.

    python bench/reliability.py --kills 20 --images 300
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hostile import make_corpus  # noqa: E402
from test_crash import make_distinct_jpegs  # noqa: E402
from test_crash import run_build as cli_build  # noqa: E402

from indexer.store import sync, vectors  # noqa: E402
from indexer.store.catalog import Catalog  # noqa: E402


def consistent(index: Path) -> bool:
    cat = Catalog(index, readonly=True)
    ids, _ = cat.all_vectors()
    faiss_index, state = vectors.load(sync.index_path(index))
    same = np.array_equal(np.sort(faiss_index.ids()), np.sort(ids))
    temps = [p for p in index.iterdir() if ".tmp" in p.name]
    return same and state["generation"] == cat.generation() and not temps


def hostile(tmp: Path) -> dict:
    root = tmp / "hostile"
    expect = make_corpus(root, empty_files=10_000)
    proc = cli_build(tmp / "hostile-index", root, "--json")
    try:
        out, err = proc.communicate(timeout=600)
        hang = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err, hang = "", "", True
    crashed = proc.returncode not in (0, 3) or "Traceback" in err
    summary = json.loads(out) if out.strip() else {}
    return {
        "inputs tried": len(expect) + 10_000 - 1,  # the emoji/newline names are files too
        "indexed": summary.get("images"),
        "ledgered": summary.get("ledger"),
        "crashes": int(crashed),
        "hangs": int(hang),
    }


def kills(tmp: Path, n_kills: int, n_images: int, seed: int) -> dict:
    root = tmp / "pics"
    make_distinct_jpegs(root, n_images, seed=seed)
    index = tmp / "kill-index"
    start = time.perf_counter()
    full = cli_build(tmp / "timing-index", root)
    full.wait()
    full_s = time.perf_counter() - start
    rng = random.Random(seed)
    delivered = survived = rounds = 0
    window = full_s  # how long the next build may run: kill somewhere inside it
    while delivered < n_kills and rounds < 3 * n_kills:
        # new pictures every round, so kills land in scan, hash, decode, encode, commit, save
        make_distinct_jpegs(root / f"round{rounds:02d}", n_images // 10, seed=seed + rounds + 1)
        rounds += 1
        expected = sum(1 for _ in root.rglob("*.jpg"))
        proc = cli_build(index, root)
        time.sleep(rng.uniform(0.1, 0.95 * window))
        if proc.poll() is not None:
            continue  # finished before the kill: try again with new pictures
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        delivered += 1
        start = time.perf_counter()
        rerun = cli_build(index, root)
        rerun.wait()
        window = time.perf_counter() - start + 1.0
        cat = Catalog(index, readonly=True)
        ok = rerun.returncode == 0 and consistent(index)
        survived += int(ok and cat.counts()["images"] == expected)
    present = Catalog(index, readonly=True).counts()["images"]
    return {
        "SIGKILLs delivered mid-build": delivered,
        "rounds (some builds ended before their kill)": rounds,
        "kills survived (rerun consistent, all present)": survived,
        "full build (s)": round(full_s, 1),
        "images lost": expected - present,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = hostile(Path(tmp)) | kills(Path(tmp), args.kills, args.images, args.seed)
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
