"""Milvus figures (prints a table): export rate, search latency local FAISS vs Milvus, overlap.

A catalog of `--n` clustered unit vectors (768-d, one fake path each, 100 folders) gets the
FAISS index `index build` would make (IVF-Flat from 50k, nprobe tuned to recall 0.95), then is
exported to Milvus (`export_milvus`: first sync, then a no-change re-sync, then 1 % changed).
Search latency is `Searcher.search_vector` (k=10, catalog join included) both ways, warm; the
overlap is |top-10 local ∩ top-10 Milvus| / 10, and each against exact search.

    python bench/milvus.py --n 100000                 # Milvus Lite in a temp folder
    python bench/milvus.py --n 100000 --uri http://host:19530  # a server (MILVUS_TOKEN)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
from dedup import synthetic  # same clustered generator as the FAISS and dedup benches
from sqlalchemy import delete, insert

from indexer.milvus.sync import export_milvus
from indexer.search import Filters, Searcher
from indexer.settings import Settings
from indexer.store import sync
from indexer.store.catalog import Catalog, Content, File

IDENTITY = {"architecture": "bench", "weights_sha256": "0" * 64, "preprocess": "none"}


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
    """(ms per query, [top-10 ids]) for warm `search_vector` calls, k=10."""
    searcher.search_vector(queries[0], 10, filters)  # load the index / the collection
    start = time.perf_counter()
    tops = [[h.id for h in searcher.search_vector(q, 10, filters)] for q in queries]
    return (time.perf_counter() - start) * 1000 / len(queries), tops


def overlap(a: list[list[int]], b: list[list[int]]) -> float:
    return float(
        np.mean([len(set(x) & set(y)) / max(1, len(x)) for x, y in zip(a, b, strict=True)])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--uri", default=None, help="Milvus URI (default: Lite in a temp dir)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = run(args, Path(tmp))
    for key, value in rows.items():
        print(f"{key:<52}  {value}")
    if args.json:
        print(json.dumps(rows))


class Rows(dict):
    """The figures, each also said on stderr as soon as it is measured (a long run shows life)."""

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        print(f"{key:<52}  {value}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    x, _ = synthetic(args.n + args.n // 200, args.dim, planted=10)
    x, extra = x[: args.n], x[args.n :]
    start = time.perf_counter()
    settings = make_catalog(tmp / "index", x)
    rows = Rows(vectors=f"{args.n} x {args.dim}")
    rows["catalog + FAISS build (s)"] = round(time.perf_counter() - start, 1)
    uri = args.uri or str(tmp / "bench.milvus.db")
    rows["milvus"] = "Milvus Lite (local file)" if args.uri is None else "server"
    first = export_milvus(settings.index, uri, "bench")
    rows["export: first sync (s)"] = first["seconds"]
    rows["export rate (vectors/s)"] = round(first["upserted"] / first["seconds"])
    rows["re-export, nothing changed (s)"] = export_milvus(settings.index, uri, "bench")["seconds"]
    moved = change_one_percent(settings.index, args.n, extra)
    again = export_milvus(settings.index, uri, "bench")
    assert again["upserted"] + again["deleted"] == moved, again
    rows["re-export, 1 % changed (s)"] = f"{again['seconds']} ({moved} entities travelled)"
    queries = x[np.random.default_rng(1).choice(args.n, args.queries, replace=False)]
    queries = queries + 0.05 * np.random.default_rng(2).standard_normal(queries.shape, np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    compare(settings, uri, queries, rows)
    return rows


def compare(settings: Settings, uri: str, queries: np.ndarray, rows: dict) -> None:
    """Latency of both searchers, and their top-10 overlap with each other and exact search."""
    local = Searcher(settings)
    remote = Searcher(replace(settings, milvus=uri, milvus_collection="bench"))
    try:
        info = local.catalog.get_meta("index")
        rows["local index"] = f"{info['index_type']}, nprobe {info['nprobe']}"
        ids, vectors = local.catalog.all_vectors()
        exact = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
        exact.add_with_ids(vectors, ids)
        truth = exact.search(queries, 10)[1].tolist()
        folder = Filters(folder="/bench/photos/d07")
        for name, filters in (("no filter", None), ("folder filter (1 %)", folder)):
            ms_local, top_local = latency(local, queries, filters)
            ms_milvus, top_milvus = latency(remote, queries, filters)
            rows[f"search ms/query, {name}: local FAISS"] = round(ms_local, 2)
            rows[f"search ms/query, {name}: Milvus"] = round(ms_milvus, 2)
            rows[f"top-10 overlap local vs Milvus, {name}"] = round(
                overlap(top_local, top_milvus), 4
            )
            if filters is None:
                rows["recall@10 vs exact: local FAISS"] = round(overlap(truth, top_local), 4)
                rows["recall@10 vs exact: Milvus"] = round(overlap(truth, top_milvus), 4)
    finally:
        local.close()
        remote.close()


if __name__ == "__main__":
    main()
