"""`index watch`: seconds from a photo landing in a watched folder to being searchable, for one
file at a time and for a burst, and the watcher's CPU while idle (events vs polling).

Runs the real command (`index watch ROOT --json`) as a user would, copies generated 3 MP JPEGs
into the folder, and calls a photo searchable once the FAISS file that readers load holds its
content id (the catalog names its path): what `index search` and the UI answer from. Idle CPU
is the watcher's user + system time over a quiet window, from /proc (Linux).

    python bench/watch.py                            # tiny weights: the watcher's own cost
    python bench/watch.py --weights ViT-L-14.pt      # + a real encoder per photo
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gpu_bench import make_folder

from indexer.store import sync, vectors
from indexer.store.catalog import Catalog

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "clip-vit-tiny" / "tiny_birder.pt"
TICKS = os.sysconf("SC_CLK_TCK")


class Watch:
    """`index watch` in a child process; its JSON lines (with arrival times) collected."""

    def __init__(self, root: Path, index: Path, args: argparse.Namespace, *extra: str) -> None:
        cmd = [sys.executable, "-m", "indexer.cli", "watch", str(root), "--index", str(index),
               "--weights", args.weights, "--workers", str(args.workers), "--device", "cpu",
               "--settle", str(args.settle), "--json", *extra]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        self.runs: list[tuple[float, dict]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.runs.append((time.time(), json.loads(line)))

    def wait_runs(self, n: int, guard: float = 600) -> None:
        deadline = time.monotonic() + guard
        while len(self.runs) < n:
            assert self.proc.poll() is None and time.monotonic() < deadline, "watcher stopped"
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system time of the watcher and its reaped children (decode workers)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / TICKS

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


class Searchable:
    """Which paths a search can return now: their content id is in the saved FAISS file."""

    def __init__(self, index: Path) -> None:
        self.index = index
        self.cat = Catalog(index, readonly=True)
        self.stamp: tuple[int, int] | None = None
        self.found: set[str] = set()

    def poll(self, wanted: set[str]) -> set[str]:
        st = os.stat(sync.index_path(self.index))
        if (st.st_mtime_ns, st.st_size) != self.stamp:
            self.stamp = (st.st_mtime_ns, st.st_size)
            try:
                faiss_index, _ = vectors.load(sync.index_path(self.index))
            except Exception:  # swapped while read: the next poll reads the new one
                self.stamp = None
                return self.found & wanted
            ids = set(faiss_index.ids().tolist())
            self.found = {r["path"] for r in self.cat.records() if r["content_id"] in ids}
        return self.found & wanted


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def one_by_one(root: Path, photos: list[Path], seen: Searchable) -> list[float]:
    """Copy each photo in once the previous one is searchable; landing → searchable, seconds."""
    out = []
    for photo in photos:
        target = root / photo.name
        shutil.copyfile(photo, target)
        landed = time.time()
        while not seen.poll({str(target)}):
            time.sleep(0.02)
        out.append(time.time() - landed)
        time.sleep(0.5)  # the watcher back to idle
    return out


def burst(root: Path, photos: list[Path], seen: Searchable) -> tuple[list[float], float]:
    """Copy all at once; per photo landing → searchable, and last landing → all searchable."""
    landed = {}
    for photo in photos:
        shutil.copyfile(photo, root / photo.name)
        landed[str(root / photo.name)] = time.time()
    done: dict[str, float] = {}
    while len(done) < len(landed):
        now = time.time()
        for path in seen.poll(set(landed)) - done.keys():
            done[path] = now
        time.sleep(0.05)
    return [done[p] - landed[p] for p in landed], max(done.values()) - max(landed.values())


def idle_cpu(watch: Watch, seconds: float) -> tuple[float, float]:
    """(% of one core, RSS MB) over `seconds` of a quiet folder."""
    start, cpu = time.monotonic(), watch.cpu_seconds()
    time.sleep(seconds)
    used = watch.cpu_seconds() - cpu
    return 100 * used / (time.monotonic() - start), watch.rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20, help="photos copied in one by one")
    parser.add_argument("--burst", type=int, default=500, help="photos copied in at once")
    parser.add_argument("--tree", type=int, default=5000, help="other files in the folder")
    parser.add_argument("--settle", type=float, default=3.0, help="index watch --settle")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measured")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--weights", default=str(TINY))
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(dir=args.dir, prefix="watch-bench-"))
    root, index, incoming = tmp / "photos", tmp / "index", tmp / "incoming"
    make_folder(incoming, args.trials + args.burst, (2000, 1500), seed=11, procs=2)
    for i in range(args.tree):  # the rest of a collection: a small picture in 100 folders
        folder = root / f"album-{i % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TINY.parents[1] / "photos" / "flat" / "bee.jpg", folder / f"{i}.jpg")
    photos = sorted(incoming.iterdir())
    watch = Watch(root, index, args)
    watch.wait_runs(1)
    seen = Searchable(index)
    single = one_by_one(root, photos[: args.trials], seen)
    before = len(watch.runs)
    one_runs = [d for _, d in watch.runs[1:before] if d["new"] == 1]
    stages = {k: round(statistics.median(d["stages"].get(k, 0) for d in one_runs), 3)
              for k in ("scan", "plan", "embed", "index")}  # fmt: skip
    per_file, tail = burst(root, photos[args.trials :], seen)
    time.sleep(2 * args.settle + 1)
    burst_runs = len(watch.runs) - before
    events_idle, rss = idle_cpu(watch, args.idle)
    code = watch.stop()
    polled = Watch(root, index, args, "--observer", "polling")  # default interval
    polled.wait_runs(1)
    polling_idle, _ = idle_cpu(polled, args.idle)
    polled.stop()
    figures = {
        "files_in_tree": args.tree + args.trials + args.burst,
        "settle_s": args.settle,
        "one_file_p50_s": round(statistics.median(single), 2),
        "one_file_p95_s": round(pct(single, 0.95), 2),
        "one_file_run_s": round(statistics.median(d["seconds"] for d in one_runs), 2),
        "one_file_run_stages_s": stages,
        "burst": args.burst,
        "burst_p50_s": round(statistics.median(per_file), 2),
        "burst_p95_s": round(pct(per_file, 0.95), 2),
        "burst_last_landed_to_all_searchable_s": round(tail, 2),
        "burst_runs": burst_runs,
        "idle_cpu_pct_events": round(events_idle, 3),
        "idle_cpu_pct_polling": round(polling_idle, 3),
        "idle_rss_mb": round(rss, 1),
        "exit_code_on_sigterm": code,
        "weights": Path(args.weights).name,
    }
    print(json.dumps(figures))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
