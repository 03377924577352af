"""A synthetic index of N photos, made through photo-index's own catalog writer, and the user's
commands timed on it, each as a whole process with its CPU seconds and peak RSS.

    python bench/scale.py make --n 300000 --out /data/scale-300k
    python bench/scale.py run --index /data/scale-300k

`make` writes clustered unit vectors (cluster-mates at cosine ~0.55-0.8, like photos of one
subject), ~2 % near-duplicates of another picture (cosine 0.97-0.995, pHash 0-6 bits from its
source), ~0.5 % re-saved copies (the same vector and pHash under their own content hash), ~0.2 %
byte-identical copies (a second path to the same content) and random pHashes for the rest, under
a few thousand folders (the paths do not exist on disk); then builds the FAISS index as `index
build` does, in a child process. It writes DIR/planted.json (`{"pairs": [[path_a, path_b]]}`:
every planted pair; everything else is distinct) and DIR/queries.npy (held-out queries: new
points of the same clusters), and prints one JSON line of figures.

`run` times the FAISS build again (as `make` does: a rebuild from the catalog), `index dedup`,
`index verify`, `index stats`, and a search process (open the
index, 200 held-out vector queries through `Searcher.search_vector`: p50/p95 and recall@10
against the exact neighbours), and scores the dedup report against planted.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NEAR, RESAVED, COPIES = 0.02, 0.005, 0.002  # planted fractions of N
BATCH = 5_000
QUERIES = 200
CAMERAS = ("Canon EOS R5", "NIKON D750", "iPhone 13", "SM-G991B", None)


class Synthetic:
    """The generator: cluster centres and spreads, and batches of pictures drawn from them."""

    def __init__(self, n: int, dim: int, seed: int) -> None:
        self.n, self.dim, self.seed = n, dim, seed
        rng = np.random.default_rng(seed)
        self.clusters = max(50, n // 1000)
        self.centres = _unit(rng.standard_normal((self.clusters, dim)).astype(np.float32))
        self.spread = rng.uniform(0.5, 0.9, self.clusters).astype(np.float32)
        self.folders = int(np.clip(n // 300, 100, 5000))

    def points(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Unit vectors around random centres (noise of norm ~spread)."""
        c = rng.integers(0, self.clusters, count)
        noise = rng.standard_normal((count, self.dim)).astype(np.float32) / np.sqrt(self.dim)
        return _unit(self.centres[c] + self.spread[c, None] * noise)

    def batch(self, start: int, count: int) -> dict:
        """Pictures start..start+count: vectors, pHashes and which of them copy which."""
        rng = np.random.default_rng([self.seed, start])
        vecs = self.points(rng, count)
        phash = rng.integers(-(1 << 63), (1 << 63) - 1, count, dtype=np.int64)
        order = rng.permutation(count)
        n_near, n_resaved = round(NEAR * count), round(RESAVED * count)
        planted = order[: n_near + n_resaved]
        sources = order[n_near + n_resaved : 2 * (n_near + n_resaved)]
        for k, (i, src) in enumerate(zip(planted, sources, strict=True)):
            if k < n_near:
                cos = rng.uniform(0.97, 0.995)
                u = rng.standard_normal(self.dim).astype(np.float32)
                u -= (u @ vecs[src]) * vecs[src]
                vecs[i] = _unit(cos * vecs[src] + np.sqrt(1 - cos**2) * _unit(u))
                mask = sum(1 << int(b) for b in rng.choice(64, rng.integers(0, 7), replace=False))
                phash[i] = phash[src] ^ np.int64(mask - (1 << 64) if mask >= 1 << 63 else mask)
            else:
                vecs[i], phash[i] = vecs[src], phash[src]
        copies = order[2 * (n_near + n_resaved) :][: round(COPIES * count)]
        pairs = [(int(i), int(s)) for i, s in zip(planted, sources, strict=True)]
        return {"vectors": vecs, "phash": phash, "pairs": pairs, "copies": copies, "rng": rng}

    def path(self, rng: np.random.Generator, i: int) -> str:
        folder = int(rng.integers(self.folders))
        year = 2004 + folder % 20
        day = f"{year}-{1 + folder % 12:02d}-{1 + folder % 28:02d}"
        return f"/srv/photos/{year}/{day} roll {folder:04d}/IMG_{i:07d}.JPG"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _content_hash(seed: int, i: int) -> str:
    return hashlib.blake2b(f"synthetic-{seed}-{i}".encode()).hexdigest()


def _meta(path: str, i: int) -> object:
    from indexer.imaging import ImageMeta

    taken = path.split("/")[4][:10] + "T12:00:00"  # the folder's date
    return ImageMeta(4000, 3000, "JPEG", taken, CAMERAS[i % len(CAMERAS)])


def make(args: argparse.Namespace) -> None:
    from indexer.build.ingest import CatalogWrites
    from indexer.build.pipeline import DecodedBatch, EncodedBatch
    from indexer.build.summary import BuildSummary
    from indexer.files import HASH_NAME, FileEntry
    from indexer.imaging import PHASH_VERSION
    from indexer.store.catalog import Catalog

    out = Path(args.out)
    if (out / "catalog.sqlite").exists():
        raise SystemExit(f"{out} already holds a catalog: pick an empty folder")
    gen = Synthetic(args.n, args.dim, args.seed)
    cat = Catalog(out)
    with cat.session() as s:
        identity = {"architecture": "synthetic", "dim": args.dim, "weights_sha256": "synthetic"}
        for key, value in (("encoder", identity), ("dim", args.dim)):
            Catalog.set_meta(s, key, value)
        Catalog.set_meta(s, "content_hash", HASH_NAME)
        Catalog.set_meta(s, "phash_version", PHASH_VERSION)
    writes = CatalogWrites(BuildSummary(index=str(out)))
    pairs: list[list[str]] = []
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, args.n, BATCH):
        count = min(BATCH, args.n - start)
        b = gen.batch(start, count)
        rng = b["rng"]
        keys = [_content_hash(args.seed, start + i) for i in range(count)]
        paths = [gen.path(rng, start + i) for i in range(count)]
        sizes = rng.integers(1 << 20, 8 << 20, count).tolist()
        mtime = 1_600_000_000_000_000_000 + start
        entries = {k: [FileEntry(p, z, mtime)] for k, p, z in zip(keys, paths, sizes, strict=True)}
        for i in b["copies"]:
            copy = paths[i].replace("/IMG_", "/copy of IMG_")
            entries[keys[i]].append(FileEntry(copy, sizes[i], mtime))
            pairs.append([paths[i], copy])
        pairs += [[paths[s], paths[i]] for i, s in b["pairs"]]
        metas = [_meta(p, i) for i, p in enumerate(paths)]
        decoded = DecodedBatch(keys, None, metas, b["phash"].tolist(), [], [None] * count)
        with cat.session() as s:
            writes.store_batch(s, EncodedBatch(decoded, b["vectors"]), entries, {})
        if args.progress and (start // BATCH) % 20 == 0:
            took = time.perf_counter() - started
            print(f"{start + count} rows, {took:.0f} s", file=sys.stderr, flush=True)
    fill_s, fill_cpu = time.perf_counter() - started, time.process_time() - cpu
    with cat.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    images = cat.counts()["images"]
    cat.close()
    (out / "planted.json").write_text(json.dumps({"pairs": pairs}))
    np.save(out / "queries.npy", gen.points(np.random.default_rng([args.seed, 1 << 40]), QUERIES))
    sync = measured([sys.executable, __file__, "sync", "--index", str(out)])
    catalog_bytes = (out / "catalog.sqlite").stat().st_size
    if sync["rc"]:
        raise SystemExit(f"the FAISS build failed: {sync['stderr']}")
    figures = {
        "n": args.n,
        "images": images,
        "planted_pairs": len(pairs),
        "fill_seconds": round(fill_s, 1),
        "fill_cpu_seconds": round(fill_cpu, 1),
        "rows_per_second": round(args.n / fill_s),
        "catalog_bytes": catalog_bytes,
        "catalog_bytes_per_photo": round(catalog_bytes / images),
        "sync_seconds": sync["seconds"],
        "sync_cpu_seconds": sync["cpu_seconds"],
        "sync_peak_rss_mb": sync["peak_rss_mb"],
        **json.loads(sync["stdout"]),
        "faiss_bytes": (out / "vectors.faiss").stat().st_size,
    }
    print(json.dumps(figures), flush=True)


def sync_child(args: argparse.Namespace) -> None:
    """The FAISS build of `index build` (a rebuild from the catalog), as its own process."""
    from indexer.settings import Settings
    from indexer.store.catalog import Catalog
    from indexer.store.locking import WriterLock
    from indexer.store.sync import sync_index

    settings = Settings.from_env(index=Path(args.index), memory_budget_mb=args.memory_budget_mb)
    with WriterLock(settings.index):
        cat = Catalog(settings.index)
        info = sync_index(cat, settings, rebuild=True)
        cat.close()
    print(json.dumps(info))


def measured(cmd: list[str]) -> dict:
    """Run `cmd` as a child process: its wall and CPU seconds, peak RSS, exit code, output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "rc": os.waitstatus_to_exitcode(status),
        "stdout": stdout,
        "stderr": stderr[-2000:],
    }


def run(args: argparse.Namespace) -> None:
    index = Path(args.index)
    cli = [sys.executable, "-m", "indexer.cli"]
    out: dict[str, object] = {"index": str(index)}
    report = index / "dedup-report.json"
    budget = ["--memory-budget-mb", str(args.memory_budget_mb)] if args.memory_budget_mb else []
    steps = {
        "build": [sys.executable, __file__, "sync", "--index", str(index), *budget],
        "dedup": [*cli, "dedup", "--index", str(index), "-o", str(report)],
        "verify": [*cli, "verify", "--index", str(index)],
        "stats": [*cli, "stats", "--index", str(index), "--json"],
        "search": [sys.executable, __file__, "search-child", "--index", str(index)],
    }
    for name, cmd in steps.items():
        if args.only and name not in args.only:
            continue
        got = measured(cmd)
        out[name] = {k: got[k] for k in ("seconds", "cpu_seconds", "peak_rss_mb", "rc")}
        if name == "build" and got["rc"] == 0:
            out[name].update(json.loads(got["stdout"]))  # type: ignore[union-attr]
        if name == "search":
            out[name].update(search_scores(index, json.loads(got["stdout"])))  # type: ignore[union-attr]
        if name == "dedup" and got["rc"] == 0:
            out[name].update(dedup_scores(index, json.loads(report.read_text())))  # type: ignore[union-attr]
        if got["rc"] not in (0, 1, 3):
            out[name]["stderr"] = got["stderr"]  # type: ignore[index]
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    print(json.dumps(out), flush=True)


def search_child(args: argparse.Namespace) -> None:
    """A search process: open the index as `index search` does, answer the held-out queries."""
    started = time.perf_counter()
    from indexer.search import Searcher
    from indexer.settings import Settings

    searcher = Searcher(Settings.from_env(index=Path(args.index)))
    queries = np.load(Path(args.index) / "queries.npy")
    searcher.search_vector(queries[0], 10)  # opens the index
    start_s, at_start = time.perf_counter() - started, memory()
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = searcher.search_vector(q, 10)
        times.append(time.perf_counter() - t)
        found.append([h.id for h in hits])
    ms = [round(1000 * t, 3) for t in times]
    rss = {"at_start": at_start, "after_queries": memory()}
    print(json.dumps({"start_seconds": round(start_s, 3), "ms": ms, "ids": found, "rss_mb": rss}))


def memory() -> dict[str, int]:
    """This process's resident memory in MiB: private (anonymous) and mapped from files (the
    memory-mapped FAISS lists: page cache the kernel can drop)."""
    status = Path("/proc/self/status").read_text().split("\n")
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Rss")}
    return {"anon": kb.get("RssAnon", 0) // 1024, "file": kb.get("RssFile", 0) // 1024}


def search_scores(index: Path, child: dict) -> dict:
    """Latency percentiles of the child's queries and their recall@10 against exact search."""
    from indexer.store.catalog import Catalog
    from indexer.store.exact import neighbours

    queries = np.load(index / "queries.npy")
    cat = Catalog(index, readonly=True)
    truth = neighbours(queries, cat.vectors(), 10)
    cat.close()
    hits = [len(set(t.tolist()) & set(g)) for t, g in zip(truth, child["ids"], strict=True)]
    ms = np.asarray(child["ms"])
    return {
        "start_seconds": child["start_seconds"],
        "rss_mb": child["rss_mb"],
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "recall_at_10": round(sum(hits) / (10 * len(queries)), 4),
    }


def dedup_scores(index: Path, report: dict) -> dict:
    """Planted pairs found in one group, and groups that join pictures nothing planted links."""
    pairs = json.loads((index / "planted.json").read_text())["pairs"]
    family: dict[str, str] = {}

    def root(p: str) -> str:
        while family.get(p, p) != p:
            p = family[p]
        return p

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            family[ra] = rb
    groups_of: dict[str, set[int]] = {}
    false: dict[str, int] = {}
    for g in report["groups"]:
        members = [m["path"] for m in g["members"]]
        for m in members:
            groups_of.setdefault(m, set()).add(g["id"])
        if len({root(m) for m in members}) > 1:
            false[g["tier"]] = false.get(g["tier"], 0) + 1
    grouped = sum(bool(groups_of.get(a, set()) & groups_of.get(b, set())) for a, b in pairs)
    return {
        "groups": report["counts"],
        "planted_pairs": len(pairs),
        "planted_grouped": round(grouped / max(1, len(pairs)), 4),
        "false_groups": false,
        "search": report.get("search"),
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make", help="write a synthetic index")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    p = sub.add_parser("run", help="time the user's commands on it")
    p.add_argument("--index", required=True)
    p.add_argument("--only", nargs="*", help="build dedup verify stats search")
    p.add_argument("--memory-budget-mb", type=float, default=None, help="for the build step")
    p = sub.add_parser("sync", help="(internal) the FAISS build, in a child process")
    p.add_argument("--index", required=True)
    p.add_argument("--memory-budget-mb", type=float, default=None)
    p = sub.add_parser("search-child", help="(internal) a search process")
    p.add_argument("--index", required=True)
    args = parser.parse_args()
    {"make": make, "run": run, "sync": sync_child, "search-child": search_child}[args.command](args)


if __name__ == "__main__":
    main()
