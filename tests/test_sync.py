"""Catalog ⇄ FAISS: IVF chosen for a large catalog, lagging/corrupt files rebuilt, verify/repair."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import clustered
from sqlalchemy import insert

from indexer.settings import Settings
from indexer.store import sync, vectors
from indexer.store.catalog import Catalog, Content, File
from indexer.verify import verify


def plant(index_dir, x: np.ndarray) -> Catalog:
    """A catalog with one file + content per planted vector (no images involved)."""
    cat = Catalog(index_dir)
    now = time.time()
    contents = [
        {"id": i + 1, "hash": f"h{i}", "size": 1, "vector": v.tobytes(), "embedded_at": now}
        for i, v in enumerate(x)
    ]
    files = [
        {"path": f"/nowhere/{i}.jpg", "content_id": i + 1, "size": 1, "mtime_ns": 0}
        | {"indexed_at": now}
        for i in range(len(x))
    ]
    with cat.session() as s:
        s.execute(insert(Content), contents)
        s.execute(insert(File), files)
        Catalog.set_meta(s, "dim", x.shape[1])
        Catalog.bump_generation(s)
    return cat


def test_large_catalog_gets_ivf_with_target_recall(tmp_path):
    n = vectors.FLAT_MAX + 10_000
    x = clustered(n + 300, 32, clusters=400, spread=0.6)
    cat = plant(tmp_path, x[:n])  # the last 300: queries of the same kind, not in the index
    settings = Settings.from_env(env={}, index=tmp_path)
    info = sync.sync_index(cat, settings)
    assert info["index_type"].startswith("IVF") and info["index_type"].endswith(",Flat")
    assert info["recall_at_10"] >= 0.95 and info["nprobe"] >= 1
    assert info["vectors"] == n == info["tuned_for"]
    # nprobe was tuned on held-out queries: new pictures get the recall it promises
    index, _ = vectors.load(sync.index_path(tmp_path), mmap=True)
    _, got = index.search(x[n:], 10, nprobe=info["nprobe"])
    truth = np.argsort(-(x[n:] @ x[:n].T), axis=1)[:, :10] + 1  # content ids start at 1
    hits = [len(set(t) & set(g)) for t, g in zip(truth.tolist(), got.tolist(), strict=True)]
    assert sum(hits) / truth.size >= 0.95


def test_verify_detects_and_repairs_without_reembedding(tmp_path):
    x = clustered(300, 16)
    cat = plant(tmp_path, x)
    settings = Settings.from_env(env={}, index=tmp_path)
    sync.sync_index(cat, settings)
    report = verify(settings)
    assert set(report["problems"]) == {"missing_files"}  # /nowhere/... files do not exist
    path = sync.index_path(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    report = verify(settings)
    assert "index_file" in report["problems"]
    assert any("--repair" in m for m in report["messages"])
    fixed = verify(settings, repair=True)
    assert fixed["repaired"]
    index, state = vectors.load(path)
    assert index.ntotal == 0 and state["generation"] == cat.generation()


def test_damaged_catalog_is_detected_and_salvaged(photos, settings, tiny_encoder):
    from indexer.build import build
    from indexer.store.catalog import CatalogError

    first = build([photos], settings, encoder=tiny_encoder)
    path = settings.index / "catalog.sqlite"
    data = bytearray(path.read_bytes())
    data[0:16] = b"garbage garbage!"  # the SQLite header: nothing opens it any more
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match="verify --repair"):
        Catalog(settings.index, readonly=True)
    report = verify(settings)
    assert "catalog_integrity" in report["problems"]
    assert "salvages" in report["messages"][0]
    path.write_bytes(bytes(data[:0]) + b"SQLite format 3\x00" + bytes(data[16:]))
    # a damaged page in the middle: quick_check fails, rows elsewhere survive
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 3 : page * 3 + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    report = verify(settings, repair=True)
    assert report["repaired"] and any("salvaged" in m for m in report["messages"])
    assert list(settings.index.glob("catalog.sqlite.damaged-*"))
    again = build([photos], settings, encoder=tiny_encoder)
    assert again.images == first.images and again.vectors == first.vectors
    assert again.embedded < first.embedded  # surviving vectors were reused
    assert verify(settings)["problems"] == {}


def test_a_build_with_nothing_new_leaves_the_faiss_file_alone(photos, settings, tiny_encoder):
    """No-op builds write nothing to vectors.faiss and report the saved tuning; new pictures
    are written."""
    from indexer.build import build

    first = build([photos / "flat"], settings, encoder=tiny_encoder)
    path = sync.index_path(settings.index)
    before = path.stat()
    again = build([photos / "flat"], settings, encoder=tiny_encoder)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    tuning = ("index_type", "nprobe", "recall_at_10", "search_ms", "vectors")
    assert [getattr(again, k) for k in tuning] == [getattr(first, k) for k in tuning]
    more = build([photos], settings, encoder=tiny_encoder)
    assert more.new > 0 and path.stat().st_ino != before.st_ino
    assert vectors.load(path)[0].ntotal == more.vectors > first.vectors


def test_a_state_file_from_a_newer_version_is_rebuilt_not_a_crash(photos, settings, tiny_encoder):
    """vectors.json written by a newer photo-index (another layout): the build rebuilds the
    FAISS file from the catalog and search still answers."""
    import json

    from indexer.build import build
    from indexer.search import Searcher

    first = build([photos / "flat"], settings, encoder=tiny_encoder)
    state_path = sync.index_path(settings.index).with_suffix(".json")
    state = json.loads(state_path.read_text())
    state["state_version"] += 1
    state["spec"]["layout"] = "something new"
    state_path.write_text(json.dumps(state))
    again = build([photos / "flat"], settings, encoder=tiny_encoder)
    assert again.vectors == first.vectors and again.embedded == 0
    assert json.loads(state_path.read_text())["state_version"] == vectors.STATE_VERSION
    searcher = Searcher(settings, encoder=tiny_encoder)
    try:
        assert searcher.search_image(photos / "flat" / "cat.jpg", k=1)[0].score > 0.99
    finally:
        searcher.close()
