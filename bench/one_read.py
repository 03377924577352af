"""A first build reads each new file once: end to end on a cold disk, one read vs hashing ahead.

Two folders of n generated 3 MP JPEGs with the same pictures (same decode cost): in one every
file has its own size, as in a real collection, so the decode workers hash the bytes they
decode; in the other sizes come in pairs, so the build hashes every file in a pass before
decoding (what every build did before). Files are dropped from the page cache before each
pass. Prints images/s of decode alone and of each build, and the ratio one read / hash ahead.

    python bench/one_read.py                      # this disk
    python bench/one_read.py --throttle-mbps 100  # as on a 100 MB/s disk (root, cgroup v1 blkio)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from gpu_bench import decode_rate, evict, make_folder

from indexer.build import build
from indexer.encoder import load_encoder
from indexer.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
BLKIO = Path("/sys/fs/cgroup/blkio")


def throttle(folder: Path, mbps: float) -> Path:
    """Move this process (and the workers it forks) into a blkio cgroup that reads the folder's
    disk at `mbps` MB/s; returns the cgroup to remove afterwards."""
    dev = os.stat(folder).st_dev
    group = BLKIO / f"photo-index-bench-{os.getpid()}"
    try:
        group.mkdir()
        rule = f"{os.major(dev)}:{os.minor(dev)} {int(mbps * 1e6)}"
        (group / "blkio.throttle.read_bps_device").write_text(rule)
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        raise SystemExit(f"cannot throttle reads ({exc}): needs root and cgroup v1 blkio") from None
    return group


def release(group: Path) -> None:
    (BLKIO / "cgroup.procs").write_text(str(os.getpid()))
    group.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400, help="JPEGs per folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--weights", default=str(FIXTURES / "clip-vit-tiny/tiny_birder.pt"))
    parser.add_argument("--throttle-mbps", type=float, default=0)
    parser.add_argument("--dir", default=None, help="where to write the JPEGs (a real disk)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(dir=args.dir, prefix="one-read-"))
    folders = {"one read": tmp / "unique", "hashed ahead": tmp / "twins"}
    for twins, folder in enumerate(folders.values()):
        make_folder(
            folder, args.n, (2000, 1500), seed=7, procs=os.cpu_count() or 2, twins=bool(twins)
        )
    group = throttle(tmp, args.throttle_mbps) if args.throttle_mbps else None
    encoder = load_encoder(args.weights, device="cpu")
    rates: dict[str, list[float]] = {name: [] for name in folders}
    try:
        evict(folders["one read"])
        dec = decode_rate(folders["one read"], args.workers, args.batch)
        for run, order in enumerate((list(folders), list(folders)[::-1])):
            for name in order:
                evict(folders[name])
                settings = Settings.from_env(
                    env={}, index=tmp / f"index-{run}-{name[:3]}", batch_size=args.batch,
                    workers=args.workers, device="cpu",
                )  # fmt: skip
                start = time.perf_counter()
                summary = build([folders[name]], settings, encoder=encoder)
                rates[name].append(summary.embedded / (time.perf_counter() - start))
                print(f"{name}: {rates[name][-1]:.1f} img/s, stages {summary.stages}", flush=True)
    finally:
        if group:
            release(group)
    disk = f"reads throttled to {args.throttle_mbps:g} MB/s" if group else "this disk"
    print(f"\n{args.n} 3 MP JPEGs per build, cold page cache, {disk}, {args.workers} workers")
    print(f"decode alone (cold)            {dec:.1f} img/s")
    for name, r in rates.items():
        runs = ", ".join(f"{x:.1f}" for x in r)
        print(f"build, {name:<14}          {sum(r) / len(r):.1f} img/s ({runs})")
    one, ahead = (sum(r) / len(r) for r in rates.values())
    print(f"one read / hashed ahead        {one / ahead:.2f}")
    print(f"one read / decode alone        {one / dec:.2f}")


if __name__ == "__main__":
    main()
