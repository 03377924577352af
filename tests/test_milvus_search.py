"""Searching a synced Milvus collection instead of the local FAISS file: CLI, library and UI.

Each test runs on Milvus Lite and on a real Milvus 2.3 server (tests/milvus_server.py), against
the same catalog, and must name the same neighbours as the local index.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import PHOTOS, TINY_BIRDER, invoke, make_distinct_jpegs
from tests.milvus_server import build_index, target_in

pytest.importorskip("pymilvus", reason="needs pymilvus + milvus-lite: pip install '.[milvus]'")
pytest.importorskip("milvus_lite", reason="needs milvus-lite: pip install '.[milvus]'")

HOSTILE = "we\"ird' or 1==1) ${x}"  # a folder name made to break a filter built by pasting


def _dated(folder: Path) -> None:
    """Four pictures with EXIF dates 2019..2022 (the corpus has only one dated picture)."""
    make_distinct_jpegs(folder, 4, seed=7)
    for year, path in zip(range(2019, 2023), sorted(folder.glob("*.jpg")), strict=True):
        exif = Image.Exif()
        exif[0x0132] = f"{year}:0{year - 2018}:15 10:00:00"
        Image.open(path).save(path, exif=exif, quality=85)


@pytest.fixture(scope="module")
def synced(tmp_path_factory, tiny_encoder, backend):
    """The corpus, dated pictures and a hostile folder, indexed and exported to Milvus Lite or
    the server: (settings, photos, where)."""
    from indexer.milvus.sync import export_milvus
    from indexer.settings import Settings

    root = tmp_path_factory.mktemp("milvus")
    photos = root / "photos"
    shutil.copytree(PHOTOS, photos)
    _dated(photos / "dated")
    odd = photos / HOSTILE
    odd.mkdir()
    shutil.copy(PHOTOS / "flat" / "cat.jpg", odd / "café \u202e☕.jpg")
    shutil.copy(PHOTOS / "flat" / "duck.jp2", odd / "duck.jp2")
    index = root / "index"
    build_index([photos], index, tiny_encoder)
    where = target_in(backend, root)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MILVUS_TOKEN", where.token)
        export_milvus(index, where.uri, where.collection)
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), device="cpu")
    settings = replace(settings, milvus_collection=where.collection)
    yield settings, photos, where
    if backend is not None:
        where.drop()


def _both(synced, tiny_encoder):
    from indexer.search import Searcher

    settings, photos, where = synced
    local = Searcher(settings, encoder=tiny_encoder)
    remote = Searcher(replace(settings, milvus=where.uri), encoder=tiny_encoder)
    return local, remote


def _same_hits(got, want) -> None:
    """The same paths with the same scores (float rounding aside)."""
    assert {h.path for h in got} == {h.path for h in want}
    scores = {h.path: h.score for h in want}
    assert [h.score for h in got] == pytest.approx([scores[h.path] for h in got], abs=1e-5)


def test_search_from_milvus_names_the_local_neighbours(synced, tiny_encoder):
    from indexer.search import Filters

    settings, photos, where = synced
    local, remote = _both(synced, tiny_encoder)
    dated = sorted(str(p) for p in (photos / "dated").glob("*.jpg"))
    filters = [
        None,
        Filters(folder=str(photos / "nested")),
        Filters(folder=str(photos / "nested" / "cats") + "/"),
        Filters(folder=str(photos / HOSTILE)),
        Filters(date_from="2020-01-01", date_to="2021"),
        Filters(date_to="2020-02"),
        Filters(min_size=30_000, max_size=100_000),
        Filters(folder=str(photos / "flat"), min_size=25_000),
    ]
    try:
        ids, vectors = local.catalog.all_vectors()
        for vector in vectors[::5]:
            for f in filters:
                for k in (5, 100):
                    want = local.search_vector(vector, k, f)
                    got = remote.search_vector(vector, k, f)
                    assert len(got) == len(want)
                    if k == 100:  # every match: the same paths with the same scores
                        _same_hits(got, want)
                    else:
                        want_scores = [h.score for h in want]
                        assert [h.score for h in got] == pytest.approx(want_scores, abs=1e-5)
        cat = local.search_vector(vectors[0], 100, Filters(folder=str(photos / HOSTILE)))
        assert {Path(h.path).name for h in cat} == {"café \u202e☕.jpg", "duck.jp2"}
        years = remote.search_vector(vectors[0], 100, Filters(date_from="2020", date_to="2021"))
        assert sorted(h.path for h in years) == dated[1:3]
    finally:
        local.close()
        remote.close()


def test_cli_search_json_is_the_same_from_milvus(synced):
    settings, photos, where = synced
    query = PHOTOS / "flat" / "cat.jpg"
    base = ("search", query, "--index", settings.index, "--weights", TINY_BIRDER, "--json")
    for ask in (
        ("-k", "7"),
        ("-k", "4", "--folder", photos / "nested", "--min-size", "25000", "--max-size", "40000"),
        ("-k", "10", "--taken-from", "2020", "--taken-to", "2021-12"),
    ):
        local = invoke(*base, "--device", "cpu", *ask)
        remote = invoke(*base, "--device", "cpu", *ask, *where.args("--milvus"))
        assert local.exit_code == remote.exit_code == 0, remote.output
        want, got = json.loads(local.stdout), json.loads(remote.stdout)
        assert len(got) == int(ask[1]) or ask[-1] == "2021-12"
        assert [(h["path"], h["id"]) for h in got] == [(h["path"], h["id"]) for h in want]
        assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], abs=1e-5)
    dated = sorted(p.name for p in (photos / "dated").glob("*.jpg"))
    assert sorted(Path(h["path"]).name for h in got) == dated[1:3]  # taken in 2020 and 2021
    for bad in ("2020-13-01x", 'x" or 1==1'):
        refused = invoke(*base, "--taken-from", bad, *where.args("--milvus"))
        assert refused.exit_code == 1 and "use YYYY, YYYY-MM or YYYY-MM-DD" in refused.stderr


def test_serve_points_the_app_at_milvus(synced, tiny_encoder):
    """`index serve --milvus` hands the URI to the app, whose Searcher then answers from it."""
    from indexer.cli.serve import serve_environment
    from indexer.search import Searcher
    from indexer.settings import Settings

    settings, photos, where = synced
    env = serve_environment(replace(settings, milvus=where.uri))
    app_settings = Settings.from_env(env=env)
    assert (app_settings.milvus, app_settings.milvus_collection) == (where.uri, where.collection)
    searcher = Searcher(app_settings, encoder=tiny_encoder)
    try:
        vector = searcher.catalog.all_vectors()[1][0]
        hits = searcher.search_vector(vector, 3)
        assert searcher._milvus is not None and hits and not searcher.lagging
    finally:
        searcher.close()


def test_missing_collection_says_how_to_make_it(synced):
    settings, photos, where = synced
    query = ("search", PHOTOS / "flat" / "cat.jpg", "--index", settings.index)
    proc = invoke(*query, "--weights", TINY_BIRDER, "--milvus", where.uri, "--collection", "nope")
    assert proc.exit_code == 1
    assert "no collection nope" in proc.stderr and "index export --format milvus" in proc.stderr


def test_ui_answers_from_milvus(synced, monkeypatch):
    """The search page (as `index serve --milvus` starts it) shows what it shows locally."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import APP

    settings, photos, where = synced
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(settings.index))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    monkeypatch.setenv("PHOTO_INDEX_MILVUS_COLLECTION", where.collection)
    shown = []
    for milvus in ("", where.uri):
        monkeypatch.setenv("PHOTO_INDEX_MILVUS", milvus)
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["upload_bytes"] = (PHOTOS / "flat" / "cat.jpg").read_bytes()
        at.run()
        assert not at.exception and not at.error
        shown.append([m.value for m in at.markdown if m.value.startswith("**#")])
        said = [c.value for c in at.caption if c.value.startswith("Answered from Milvus")]
        assert len(said) == bool(milvus)
    assert len(shown[1]) == 12 and shown[1] == shown[0]
