"""A Milvus collection kept in step with the catalog, and searched instead of the FAISS file.

Against a real Milvus: Milvus Lite (an embedded Milvus in one local file, the same client API as
a server) in tmp_path. The collection is read back with pymilvus itself, never with our code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PHOTOS, ROOT, TINY_BIRDER, index_cli, invoke, make_distinct_jpegs

pytest.importorskip("pymilvus", reason="needs pymilvus + milvus-lite: pip install '.[milvus]'")
pytest.importorskip("milvus_lite", reason="needs milvus-lite: pip install '.[milvus]'")

SECRET = "s3cr3t-token-never-shown"
HOSTILE = "we\"ird' or 1==1) ${x}"  # a folder name made to break a filter built by pasting


def _build(roots: list[Path], index: Path, encoder) -> None:
    from indexer.build import build
    from indexer.settings import Settings

    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build(roots, settings, encoder=encoder)


def _dated(folder: Path) -> None:
    """Four pictures with EXIF dates 2019..2022 (the corpus has only one dated picture)."""
    make_distinct_jpegs(folder, 4, seed=7)
    for year, path in zip(range(2019, 2023), sorted(folder.glob("*.jpg")), strict=True):
        exif = Image.Exif()
        exif[0x0132] = f"{year}:0{year - 2018}:15 10:00:00"
        Image.open(path).save(path, exif=exif, quality=85)


def _collection(uri: Path, name: str = "photos") -> dict[int, dict]:
    """What the collection holds, read with pymilvus: id -> paths (a set) and vector."""
    from pymilvus import MilvusClient

    from indexer.milvus.client import close

    client = MilvusClient(str(uri))
    try:
        client.load_collection(name)
        rows = client.query(name, filter="id >= 0", output_fields=["paths", "vector"], limit=10_000)
    finally:
        close(client, str(uri))
    return {
        int(r["id"]): {"paths": set(json.loads(r["paths"])), "vector": np.asarray(r["vector"])}
        for r in rows
    }


def _catalog(index: Path) -> dict[int, dict]:
    """What the catalog says the collection should hold: id -> paths and vector."""
    from indexer.store.catalog import Catalog

    cat = Catalog(index, readonly=True)
    try:
        ids, vectors = cat.all_vectors()
        out = {int(i): {"paths": set(), "vector": v} for i, v in zip(ids, vectors, strict=True)}
        for rec in cat.records():
            if rec["content_id"] in out:
                out[rec["content_id"]]["paths"].add(rec["path"])
    finally:
        cat.close()
    return out


def _same(index: Path, uri: Path) -> None:
    want, got = _catalog(index), _collection(uri)
    assert set(got) == set(want)
    for cid, entry in want.items():
        assert got[cid]["paths"] == entry["paths"]
        np.testing.assert_allclose(got[cid]["vector"], entry["vector"], rtol=0, atol=1e-6)


def _export(index: Path, uri: Path, *extra: str) -> dict:
    done = invoke("export", "--format", "milvus", "--uri", uri, "--index", index, "--json", *extra)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


@pytest.fixture
def library(tmp_path, tiny_encoder) -> tuple[Path, Path, Path]:
    """A writable copy of some corpus folders, indexed: (photos, index, Milvus Lite file)."""
    photos = tmp_path / "photos"
    for part in ("flat", "nested"):
        shutil.copytree(PHOTOS / part, photos / part)
    index = tmp_path / "index"
    _build([photos], index, tiny_encoder)
    return photos, index, tmp_path / "photos.milvus.db"


def test_export_then_again_moves_nothing(library):
    from indexer.search import Searcher
    from indexer.settings import Settings
    from indexer.store.catalog import Catalog

    photos, index, uri = library
    first = _export(index, uri)
    n = len(_catalog(index))
    assert (first["entities"], first["upserted"], first["deleted"]) == (n, n, 0)
    _same(index, uri)
    again = _export(index, uri)
    assert (again["upserted"], again["deleted"], again["unchanged"]) == (0, 0, n)
    assert again["generation"] == first["generation"]
    cat = Catalog(index)
    with cat.session() as s:  # what `verify --repair` does after rebuilding the FAISS file
        Catalog.bump_generation(s)
    cat.close()
    bumped = _export(index, uri)
    assert (bumped["upserted"], bumped["generation"]) == (0, first["generation"] + 1)
    searcher = Searcher(Settings.from_env(env={}, index=index, milvus=str(uri)))
    try:
        assert searcher.milvus.collection == "photos"  # opened: not behind the catalog
        assert not searcher.lagging
    finally:
        searcher.close()


def test_sync_sends_only_what_changed(library, tiny_encoder):
    from indexer.store.catalog import Catalog

    photos, index, uri = library
    _export(index, uri)
    before = _catalog(index)
    make_distinct_jpegs(photos / "new", 2, seed=3)  # 2 new contents
    (photos / "flat" / "duck.jp2").unlink()  # a content with one path: gone
    Image.open(photos / "flat" / "magpie.pbm").rotate(90).save(photos / "flat" / "magpie.pbm")
    os.rename(photos / "flat" / "camera.jpg", photos / "flat" / "camera-moved.jpg")  # paths only
    _build([photos], index, tiny_encoder)
    after = _catalog(index)
    added = {c for c in after if c not in before or after[c]["paths"] != before[c]["paths"]}
    gone = set(before) - set(after)
    assert len(added) == 4 and len(gone) == 2  # new ×2, the edited magpie, the moved camera
    done = _export(index, uri)
    assert (done["upserted"], done["deleted"]) == (len(added), len(gone))
    _same(index, uri)
    cat = Catalog(index, readonly=True)
    assert done["generation"] == cat.generation()
    cat.close()
    assert _export(index, uri)["upserted"] == 0


def test_sync_cut_short_by_an_error_resumes(library):
    from indexer.milvus.sync import export_milvus

    photos, index, uri = library
    n = len(_catalog(index))

    def stop_after_first_batch(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_milvus(index, str(uri), batch=4, progress=stop_after_first_batch)
    assert len(_collection(uri)) == 4
    done = export_milvus(index, str(uri), batch=4)
    assert (done["upserted"], done["deleted"]) == (n - 4, 0)  # the first batch did not travel again
    _same(index, uri)


def test_sync_killed_mid_way_resumes(library):
    """kill -9 in the middle of a sync (after its second batch), then the same export again."""
    photos, index, uri = library
    script = (
        "import os, signal, sys\n"
        "from indexer.milvus.sync import export_milvus\n"
        "def kill(done, total):\n"
        "    if done >= 8: os.kill(os.getpid(), signal.SIGKILL)\n"
        "export_milvus(sys.argv[1], sys.argv[2], batch=4, progress=kill)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", script, str(index), str(uri)]
    proc = subprocess.run(argv, timeout=120, env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    done = _export(index, uri)
    assert done["upserted"] <= done["entities"] - 4  # what had arrived stays
    _same(index, uri)
    assert _export(index, uri)["upserted"] == 0


def test_collection_of_another_encoder_is_refused(library, tmp_path):
    from indexer.store.catalog import Catalog
    from tests.conftest import fill_planted

    photos, index, uri = library
    other = tmp_path / "other"
    fill_planted(other, {"a.jpg": {"vector": [1, 0, 0, 0]}}, tmp_path)
    cat = Catalog(other)
    with cat.session() as s:
        identity = {"architecture": "other-clip", "weights_sha256": "ab" * 32, "dim": 4}
        Catalog.set_meta(s, "encoder", {**identity, "preprocess": "x"})
    cat.close()
    _export(other, uri)
    proc = invoke("export", "--format", "milvus", "--uri", uri, "--index", index)
    assert proc.exit_code == 1
    assert proc.stderr.count("\n") == 1 and "another encoder" in proc.stderr
    assert "other-clip" in proc.stderr and "dim 4" in proc.stderr
    assert len(_collection(uri)) == 1  # untouched


def test_token_never_printed(library, monkeypatch):
    photos, index, uri = library
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MILVUS_TOKEN": SECRET}
    server = "http://127.0.0.1:1"  # nothing listens there
    proc = index_cli("export", "--format", "milvus", "--uri", server, "--index", index, env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("error: Milvus at http://127.0.0.1:1")
    assert proc.stderr.count("\n") == 1 and SECRET not in proc.stdout + proc.stderr
    monkeypatch.setenv("MILVUS_TOKEN", SECRET)
    for args in (
        ("search", PHOTOS / "flat" / "cat.jpg", "--index", index, "--milvus", server),
        ("export", "--format", "milvus", "--uri", uri, "--index", index, "--collection", "9bad"),
        ("export", "--format", "milvus", "--uri", f"http://user:{SECRET}@127.0.0.1:1", "--index",
         index),
    ):  # fmt: skip
        done = invoke(*args, "--json")
        assert done.exit_code == 1 and done.stderr.startswith("error: ")
        assert done.stderr.count("\n") == 1 and SECRET not in done.output
    assert SECRET not in json.dumps(_export(index, uri))  # Milvus Lite takes no token


# --------------------------------------------------------------------------- search
@pytest.fixture(scope="module")
def synced(tmp_path_factory, tiny_encoder):
    """The corpus, dated pictures and a hostile folder, indexed and exported to Milvus Lite."""
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
    _build([photos], index, tiny_encoder)
    uri = root / "photos.milvus.db"
    export_milvus(index, str(uri))
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), device="cpu")
    return settings, photos, uri


def _both(synced, tiny_encoder):
    from indexer.search import Searcher

    settings, photos, uri = synced
    local = Searcher(settings, encoder=tiny_encoder)
    remote = Searcher(replace(settings, milvus=str(uri)), encoder=tiny_encoder)
    return local, remote


def _same_hits(got, want) -> None:
    """The same paths with the same scores (float rounding aside)."""
    assert {h.path for h in got} == {h.path for h in want}
    scores = {h.path: h.score for h in want}
    assert [h.score for h in got] == pytest.approx([scores[h.path] for h in got], abs=1e-5)


def test_search_from_milvus_names_the_local_neighbours(synced, tiny_encoder):
    from indexer.search import Filters

    settings, photos, uri = synced
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
    settings, photos, uri = synced
    query = PHOTOS / "flat" / "cat.jpg"
    base = ("search", query, "--index", settings.index, "--weights", TINY_BIRDER, "--json")
    for where in (
        ("-k", "7"),
        ("-k", "4", "--folder", photos / "nested", "--min-size", "25000", "--max-size", "40000"),
        ("-k", "10", "--taken-from", "2020", "--taken-to", "2021-12"),
    ):
        local = invoke(*base, "--device", "cpu", *where)
        remote = invoke(*base, "--device", "cpu", *where, "--milvus", uri)
        assert local.exit_code == remote.exit_code == 0, remote.output
        want, got = json.loads(local.stdout), json.loads(remote.stdout)
        assert len(got) == int(where[1]) or where[-1] == "2021-12"
        assert [(h["path"], h["id"]) for h in got] == [(h["path"], h["id"]) for h in want]
        assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], abs=1e-5)
    dated = sorted(p.name for p in (photos / "dated").glob("*.jpg"))
    assert sorted(Path(h["path"]).name for h in got) == dated[1:3]  # taken in 2020 and 2021
    for bad in ("2020-13-01x", 'x" or 1==1'):
        refused = invoke(*base, "--taken-from", bad, "--milvus", uri)
        assert refused.exit_code == 1 and "use YYYY, YYYY-MM or YYYY-MM-DD" in refused.stderr


def test_serve_points_the_app_at_milvus(synced, tiny_encoder):
    """`index serve --milvus` hands the URI to the app, whose Searcher then answers from it."""
    from indexer.cli.serve import serve_environment
    from indexer.search import Searcher
    from indexer.settings import Settings

    settings, photos, uri = synced
    env = serve_environment(replace(settings, milvus=str(uri), milvus_collection="photos"))
    app_settings = Settings.from_env(env=env)
    assert app_settings.milvus == str(uri)
    searcher = Searcher(app_settings, encoder=tiny_encoder)
    try:
        vector = searcher.catalog.all_vectors()[1][0]
        hits = searcher.search_vector(vector, 3)
        assert searcher._milvus is not None and hits and not searcher.lagging
    finally:
        searcher.close()


def test_missing_collection_says_how_to_make_it(synced):
    settings, photos, uri = synced
    proc = invoke("search", PHOTOS / "flat" / "cat.jpg", "--index", settings.index,
                  "--weights", TINY_BIRDER, "--milvus", uri, "--collection", "nope")  # fmt: skip
    assert proc.exit_code == 1
    assert "no collection nope" in proc.stderr and "index export --format milvus" in proc.stderr


def test_ui_answers_from_milvus(synced, monkeypatch):
    """The search page (as `index serve --milvus` starts it) shows what it shows locally."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import APP

    settings, photos, uri = synced
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(settings.index))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    shown = []
    for milvus in ("", str(uri)):
        monkeypatch.setenv("PHOTO_INDEX_MILVUS", milvus)
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["upload_bytes"] = (PHOTOS / "flat" / "cat.jpg").read_bytes()
        at.run()
        assert not at.exception and not at.error
        shown.append([m.value for m in at.markdown if m.value.startswith("**#")])
        said = [c.value for c in at.caption if c.value.startswith("Answered from Milvus")]
        assert len(said) == bool(milvus)
    assert len(shown[1]) == 12 and shown[1] == shown[0]
