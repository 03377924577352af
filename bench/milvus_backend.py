"""Milvus figures (prints a table): export rate, re-sync and search latency (p50/p95) on a Milvus
server and on Milvus Lite, next to the local FAISS file, in one run.

A catalog of `--n` clustered unit vectors (768-d, one fake path each, 100 folders) gets the
FAISS index `index build` would make (IVF-Flat from 50k, nprobe tuned to recall 0.95). Each
backend gets its own copy of that index and goes through `export_milvus`: a first sync, a
no-change re-sync, then one after 1 % of the pictures changed. Search latency is
`Searcher.search_vector` (k=10, warm) per query, local FAISS and Milvus on the same copy, with
and without a folder filter that keeps 1 %; overlap is |top-10 ∩ top-10| / 10, also vs exact.

    python bench/milvus_backend.py --n 100000 --backends lite,server  # server: the embedded Milvus
        # 2.3.5 (pip install milvus==2.3.5), started in the work folder and stopped at the end
    python bench/milvus_backend.py --n 100000 --backends server --uri http://host:19530  # yours
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
from dedup import synthetic  # same clustered generator as the FAISS and dedup benches
from sqlalchemy import delete, insert

from indexer.milvus.client import is_server
from indexer.milvus.sync import export_milvus
from indexer.search import Filters, Searcher
from indexer.settings import Settings
from indexer.store import sync
from indexer.store.catalog import Catalog, Content, File

IDENTITY = {"architecture": "bench", "weights_sha256": "0" * 64, "preprocess": "none"}
NAMES = {"lite": "Milvus Lite", "server": "Milvus server"}


def make_catalog(index: Path, x: np.ndarray) -> Settings:
    """Contents with `x` as vectors and one path each, then the FAISS file a build would save."""
    cat = Catalog(index)
    now = time.time()
    with cat.session() as s:
        for start in range(0, len(x), 10_000):
            rows = range(start, min(len(x), start + 10_000))
            s.execute(insert(Content), [_content(i, x[i], now) for i in rows])
            s.execute(insert(File), [_file(i, now) for i in rows])
        Catalog.set_meta(s, "encoder", {**IDENTITY, "dim": x.shape[1]})
        Catalog.set_meta(s, "dim", x.shape[1])
        Catalog.bump_generation(s)
    settings = Settings.from_env(env={}, index=index, device="cpu")
    sync.sync_index(cat, settings)
    cat.close()
    return settings


def _content(i: int, v: np.ndarray, now: float) -> dict:
    return {"id": i + 1, "hash": f"{i:064x}", "size": 10_000 + i % 5_000_000, "width": 640,
            "height": 480, "format": "JPEG", "vector": v.tobytes(), "embedded_at": now}  # fmt: skip


def _file(i: int, now: float) -> dict:
    path = f"/bench/photos/d{i % 100:02d}/img_{i:07d}.jpg"
    return {"path": path, "content_id": i + 1, "size": 1, "mtime_ns": i, "indexed_at": now}


def change_one_percent(index: Path, n: int, new: np.ndarray, seed: int = 3) -> int:
    """Delete len(new) of the `n` contents and add `new`: what a day of new photos does."""
    rng = np.random.default_rng(seed)
    gone = [int(i) + 1 for i in rng.choice(n, len(new), replace=False)]
    cat = Catalog(index)
    now = time.time()
    with cat.session() as s:
        s.execute(delete(File).where(File.content_id.in_(gone)))
        s.execute(delete(Content).where(Content.id.in_(gone)))
        added = range(n, n + len(new))
        s.execute(insert(Content), [_content(i, new[i - n], now) for i in added])
        s.execute(insert(File), [_file(i, now) for i in added])
        Catalog.bump_generation(s)
    sync.sync_index(cat, Settings.from_env(env={}, index=index, device="cpu"))  # as a build does
    cat.close()
    return 2 * len(new)


def latency(searcher: Searcher, queries: np.ndarray, filters: Filters | None) -> tuple:
    """(p50 ms, p95 ms, [top-10 ids]) over warm `search_vector` calls, k=10."""
    searcher.search_vector(queries[0], 10, filters)  # load the index / the collection
    times, tops = [], []
    for q in queries:
        start = time.perf_counter()
        tops.append([h.id for h in searcher.search_vector(q, 10, filters)])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), tops


def overlap(a: list[list[int]], b: list[list[int]]) -> float:
    return float(
        np.mean([len(set(x) & set(y)) / max(1, len(x)) for x, y in zip(a, b, strict=True)])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", default="lite", help="lite,server (in this order)")
    parser.add_argument("--uri", default=None, help="a running server (else one is started)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, ExitStack() as stack:
        rows = run(args, Path(tmp), stack)
    for key, value in rows.items():
        print(f"{key:<64}  {value}")
    if args.json:
        print(json.dumps(rows))


class Rows(dict):
    """The figures, each also said on stderr as soon as it is measured (a long run shows life)."""

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        print(f"{key:<64}  {value}", file=sys.stderr, flush=True)


def server_uri(args: argparse.Namespace, tmp: Path, stack: ExitStack) -> str:
    """--uri, or the embedded Milvus server started in `tmp` (stopped when the run ends)."""
    if args.uri:
        return args.uri
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.milvus_server import start, stop

    proc, server = start(tmp / "milvus-server")
    stack.callback(stop, proc)
    os.environ["MILVUS_TOKEN"] = server.token
    return server.uri


def run(args: argparse.Namespace, tmp: Path, stack: ExitStack) -> dict[str, object]:
    x, _ = synthetic(args.n + args.n // 200, args.dim, planted=10)
    x, extra = x[: args.n], x[args.n :]
    start = time.perf_counter()
    base = make_catalog(tmp / "index", x).index
    rows = Rows(vectors=f"{args.n} x {args.dim}")
    rows["catalog + FAISS build (s)"] = round(time.perf_counter() - start, 1)
    queries = x[np.random.default_rng(1).choice(args.n, args.queries, replace=False)]
    queries = queries + 0.05 * np.random.default_rng(2).standard_normal(queries.shape, np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for backend in args.backends.split(","):
        name = NAMES[backend]
        index = tmp / f"index-{backend}"
        shutil.copytree(base, index)
        uri = str(tmp / "bench.milvus.db") if backend == "lite" else server_uri(args, tmp, stack)
        settings = Settings.from_env(env={}, index=index, device="cpu")
        sync_figures(settings, uri, args.n, extra, rows, name)
        compare(settings, uri, queries, rows, name)
        if is_server(uri):
            consistency_cost(uri, queries[:50], rows)
        shutil.rmtree(index)
    return rows


def sync_figures(
    settings: Settings, uri: str, n: int, extra: np.ndarray, rows: dict, name: str
) -> None:
    """First sync, no-change re-sync, 1 % changed re-sync (each: until searches see it)."""
    first = export_milvus(settings.index, uri, "bench")
    rows[f"{name} ({first['server']}, index {first['index']})"] = ""
    rows[f"{name}: export, first sync (s)"] = first["seconds"]
    rows[f"{name}: export rate (vectors/s)"] = round(first["upserted"] / first["seconds"])
    hnsw = first["index"] == "HNSW"  # built on sealed segments, after the export; FLAT: exact
    rows[f"{name}: index built, no row pending for 60 s (s after the export)"] = (
        wait_indexed(uri) if hnsw else 0.0
    )
    again = export_milvus(settings.index, uri, "bench")
    rows[f"{name}: re-export, nothing changed (s)"] = again["seconds"]
    moved = change_one_percent(settings.index, n, extra)
    again = export_milvus(settings.index, uri, "bench")
    assert again["upserted"] + again["deleted"] == moved, again
    rows[f"{name}: re-export, 1 % changed (s)"] = f"{again['seconds']} ({moved} entities travelled)"
    if hnsw:  # the server compacts and re-indexes segments with deletes a little later
        wait_indexed(uri)


def wait_indexed(uri: str, settle: float = 60, limit: float = 3600) -> float:
    """Seconds until the server has no row waiting for the vector index for `settle` seconds in
    a row (0 on Lite): deletes make a 2.3 server compact and re-index segments a little later,
    and searches meanwhile are less exact."""
    from pymilvus import MilvusClient

    if not is_server(uri):
        return 0.0
    start = time.perf_counter()
    client = MilvusClient(uri=uri, token=os.environ.get("MILVUS_TOKEN", ""))
    try:
        quiet = None
        while time.perf_counter() - start < limit:
            if client.describe_index("bench", "vector").get("pending_index_rows"):
                quiet = None
            elif quiet is None:
                quiet = time.perf_counter()
            elif time.perf_counter() - quiet >= settle:
                return round(quiet - start, 1)
            time.sleep(1)
    finally:
        client.close()
    return round(time.perf_counter() - start, 1)


def consistency_cost(uri: str, queries: np.ndarray, rows: dict) -> None:
    """A bare pymilvus search (k=10) at each consistency level: what Strong costs per query, and
    why our searches ask for Bounded after the export's one Strong read."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, token=os.environ.get("MILVUS_TOKEN", ""))
    try:
        for level in ("Strong", "Bounded"):
            times = []
            for q in queries:
                start = time.perf_counter()
                client.search("bench", data=[q.tolist()], limit=10, consistency_level=level)
                times.append((time.perf_counter() - start) * 1000)
            p50, p95 = np.percentile(times, 50), np.percentile(times, 95)
            rows[f"Milvus server: bare search p50 / p95 ms, {level}"] = f"{p50:.2f} / {p95:.2f}"
    finally:
        client.close()


def compare(settings: Settings, uri: str, queries: np.ndarray, rows: dict, name: str) -> None:
    """Latency of both searchers, and their top-10 overlap with each other and exact search."""
    local = Searcher(settings)
    remote = Searcher(replace(settings, milvus=uri, milvus_collection="bench"))
    try:
        info = local.catalog.get_meta("index")
        rows[f"{name}: local index"] = f"{info['index_type']}, nprobe {info['nprobe']}"
        ids, vectors = local.catalog.all_vectors()
        exact = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
        exact.add_with_ids(vectors, ids)
        truth = exact.search(queries, 10)[1].tolist()
        folder = Filters(folder="/bench/photos/d07")
        for what, filters in (("no filter", None), ("folder filter (1 %)", folder)):
            tops = {}
            for who, searcher in (("local FAISS", local), (name, remote)):
                p50, p95, tops[who] = latency(searcher, queries, filters)
                rows[f"{name}: search p50 / p95 ms, {what}: {who}"] = f"{p50:.2f} / {p95:.2f}"
            key = f"top-10 overlap local vs {name}, {what}"
            rows[key] = round(overlap(tops["local FAISS"], tops[name]), 4)
            if filters is None:
                for who, top in tops.items():
                    rows[f"{name}: recall@10 vs exact: {who}"] = round(overlap(truth, top), 4)
    finally:
        local.close()
        remote.close()


if __name__ == "__main__":
    main()
