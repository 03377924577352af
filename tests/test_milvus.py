"""A Milvus collection kept in step with the catalog (`index export --format milvus`).

Each test that takes `target` runs twice: on Milvus Lite (an embedded Milvus in a local folder) in
tmp_path, and on a real Milvus 2.3 server (tests/milvus_server.py) with authentication on. The
collection is read back with pymilvus itself, never with our code.
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
from tests.milvus_server import Target, build_index

pytest.importorskip("pymilvus", reason="needs pymilvus + milvus-lite: pip install '.[milvus]'")
pytest.importorskip("milvus_lite", reason="needs milvus-lite: pip install '.[milvus]'")

SECRET = "s3cr3t-token-never-shown"


def stored(where: Target) -> dict[int, dict]:
    """What the collection holds: id -> paths (a set) and vector."""
    rows = where.read(["paths", "vector"])
    return {
        int(r["id"]): {"paths": set(json.loads(r["paths"])), "vector": np.asarray(r["vector"])}
        for r in rows
    }


def catalog_state(index: Path) -> dict[int, dict]:
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


def same(index: Path, where: Target) -> None:
    """The collection holds exactly the catalog's vectors (as many rows), with their paths."""
    want, got = catalog_state(index), stored(where)
    assert set(got) == set(want)
    for cid, entry in want.items():
        assert got[cid]["paths"] == entry["paths"]
        np.testing.assert_allclose(got[cid]["vector"], entry["vector"], rtol=0, atol=1e-6)


def export(index: Path, where: Target, *extra: str) -> dict:
    done = invoke("export", "--format", "milvus", *where.args(), "--index", index, "--json", *extra)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


@pytest.fixture
def library(tmp_path, tiny_encoder, target) -> tuple[Path, Path, Target]:
    """A writable copy of some corpus folders, indexed: (photos, index, where to export)."""
    photos = tmp_path / "photos"
    for part in ("flat", "nested"):
        shutil.copytree(PHOTOS / part, photos / part)
    index = tmp_path / "index"
    build_index([photos], index, tiny_encoder)
    return photos, index, target


def test_export_then_again_moves_nothing(library, backend):
    from indexer.search import Searcher
    from indexer.settings import Settings
    from indexer.store.catalog import Catalog

    photos, index, where = library
    first = export(index, where)
    n = len(catalog_state(index))
    assert (first["entities"], first["upserted"], first["deleted"]) == (n, n, 0)
    assert first["index"] == "FLAT" and first["server"].startswith("v2.3" if backend else "milvus")
    same(index, where)
    again = export(index, where)
    assert (again["upserted"], again["deleted"], again["unchanged"]) == (0, 0, n)
    assert again["generation"] == first["generation"]
    cat = Catalog(index)
    with cat.session() as s:  # what `verify --repair` does after rebuilding the FAISS file
        Catalog.bump_generation(s)
    cat.close()
    bumped = export(index, where)
    assert (bumped["upserted"], bumped["generation"]) == (0, first["generation"] + 1)
    settings = Settings.from_env(env={}, index=index, milvus=where.uri)
    searcher = Searcher(replace(settings, milvus_collection=where.collection))
    try:
        assert searcher.milvus.collection == where.collection  # opened: not behind the catalog
        assert not searcher.lagging
    finally:
        searcher.close()


def test_sync_sends_only_what_changed_and_search_sees_it_at_once(library, tiny_encoder):
    from indexer.search import Searcher
    from indexer.settings import Settings
    from indexer.store.catalog import Catalog

    photos, index, where = library
    export(index, where)
    before = catalog_state(index)
    make_distinct_jpegs(photos / "new", 2, seed=3)  # 2 new contents
    (photos / "flat" / "duck.jp2").unlink()  # a content with one path: gone
    Image.open(photos / "flat" / "magpie.pbm").rotate(90).save(photos / "flat" / "magpie.pbm")
    os.rename(photos / "flat" / "camera.jpg", photos / "flat" / "camera-moved.jpg")  # paths only
    build_index([photos], index, tiny_encoder)
    after = catalog_state(index)
    added = {c for c in after if c not in before or after[c]["paths"] != before[c]["paths"]}
    gone = set(before) - set(after)
    assert len(added) == 4 and len(gone) == 2  # new ×2, the edited magpie, the moved camera
    done = export(index, where)
    # read-your-writes: a search right after the export, from another client, sees it all
    settings = Settings.from_env(env={}, index=index, milvus=where.uri, device="cpu")
    searcher = Searcher(replace(settings, milvus_collection=where.collection))
    try:
        for cid in added:
            hits = searcher.search_vector(after[cid]["vector"], 3)
            assert hits[0].id == cid and hits[0].path in after[cid]["paths"]
        paths = {h.path for v in before.values() for h in searcher.search_vector(v["vector"], 3)}
        assert str(photos / "flat" / "duck.jp2") not in paths  # the deleted picture is gone
    finally:
        searcher.close()
    assert (done["upserted"], done["deleted"]) == (len(added), len(gone))
    same(index, where)
    cat = Catalog(index, readonly=True)
    assert done["generation"] == cat.generation()
    cat.close()
    assert export(index, where)["upserted"] == 0


LITE_ONLY = pytest.mark.parametrize("backend", ["lite"], indirect=True)  # no server behaviour


@LITE_ONLY
def test_sync_cut_short_by_an_error_resumes(library):
    from indexer.milvus.sync import export_milvus

    photos, index, where = library
    n = len(catalog_state(index))

    def stop_after_first_batch(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_milvus(index, where.uri, where.collection, batch=4, progress=stop_after_first_batch)
    assert len(stored(where)) == 4
    done = export_milvus(index, where.uri, where.collection, batch=4)
    assert (done["upserted"], done["deleted"]) == (n - 4, 0)  # the first batch did not travel again
    same(index, where)


def test_sync_killed_mid_way_resumes(library):
    """kill -9 in the middle of a sync (after its second batch), then the same export again."""
    photos, index, where = library
    script = (
        "import os, signal, sys\n"
        "from indexer.milvus.sync import export_milvus\n"
        "def kill(done, total):\n"
        "    if done >= 8: os.kill(os.getpid(), signal.SIGKILL)\n"
        "export_milvus(sys.argv[1], sys.argv[2], sys.argv[3], batch=4, progress=kill)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", script, str(index), where.uri, where.collection]
    proc = subprocess.run(argv, timeout=120, env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    done = export(index, where)
    assert done["upserted"] <= done["entities"] - 4  # what had arrived stays
    same(index, where)
    assert export(index, where)["upserted"] == 0


def planted(folder: Path, architecture: str = "other-clip") -> Path:
    """An index of one 4-d vector whose encoder is `architecture` (no pictures decoded)."""
    from indexer.store.catalog import Catalog
    from tests.conftest import fill_planted

    fill_planted(folder, {"a.jpg": {"vector": [1, 0, 0, 0]}}, folder.parent)
    cat = Catalog(folder)
    with cat.session() as s:
        identity = {"architecture": architecture, "weights_sha256": "ab" * 32, "dim": 4}
        Catalog.set_meta(s, "encoder", {**identity, "preprocess": "x"})
    cat.close()
    return folder


@LITE_ONLY
def test_collection_of_another_encoder_is_refused(library, tmp_path):
    photos, index, where = library
    export(planted(tmp_path / "other"), where)
    proc = invoke("export", "--format", "milvus", *where.args(), "--index", index)
    assert proc.exit_code == 1
    assert proc.stderr.count("\n") == 1 and "another encoder" in proc.stderr
    assert "other-clip" in proc.stderr and "dim 4" in proc.stderr
    assert len(stored(where)) == 1  # untouched


def test_index_follows_the_collection_size_on_a_server(
    milvus_server, tmp_path, tiny_encoder, monkeypatch
):
    """A collection grown past `flat_max` entities gets an HNSW index in place of FLAT (rebuilt,
    loaded); searches name the same neighbours as the local FAISS index before and after."""
    from indexer.milvus.sync import export_milvus
    from indexer.search import Filters, Searcher
    from indexer.settings import Settings
    from tests.milvus_server import target_in

    monkeypatch.setenv("MILVUS_TOKEN", milvus_server.token)
    where = target_in(milvus_server, tmp_path)
    build_index([PHOTOS / "nested", PHOTOS / "flat"], tmp_path / "index", tiny_encoder)
    settings = Settings.from_env(env={}, index=tmp_path / "index", device="cpu")
    local = Searcher(settings)
    vectors = local.catalog.all_vectors()[1]
    try:
        for flat_max, kind in ((10_000, "FLAT"), (10, "HNSW")):
            done = export_milvus(settings.index, where.uri, where.collection, flat_max=flat_max)
            assert done["index"] == kind == where.describe_index()["index_type"]
            remote = Searcher(
                replace(settings, milvus=where.uri, milvus_collection=where.collection)
            )
            for f in (None, Filters(folder=str(PHOTOS / "nested"))):
                for vector in vectors[::4]:
                    want = [h.path for h in local.search_vector(vector, 5, f)]
                    assert [h.path for h in remote.search_vector(vector, 5, f)] == want
            remote.close()
    finally:
        local.close()
        where.drop()


def test_token_never_printed(tmp_path, monkeypatch):
    index, uri = planted(tmp_path / "index", "clip"), tmp_path / "photos.milvus.db"
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
    assert SECRET not in json.dumps(export(index, Target(str(uri), "photos")))  # Lite: no token


def test_server_checks_the_token_and_never_prints_it(milvus_server, tmp_path, monkeypatch):
    """A wrong or missing token is refused by the server in one line that says so and does not
    show it; a server older than 2.3 is named with what it lacks."""
    from indexer.milvus.client import MilvusError
    from indexer.milvus.layout import server_of

    index = planted(tmp_path / "index", "clip")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MILVUS_TOKEN": f"root:{SECRET}"}
    proc = index_cli("export", "--format", "milvus", "--uri", milvus_server.uri, "--index", index,
                     env=env)  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: Milvus at {milvus_server.uri}: auth check failure")
    assert "set MILVUS_TOKEN to user:password" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    monkeypatch.delenv("MILVUS_TOKEN", raising=False)
    done = invoke("export", "--format", "milvus", "--uri", milvus_server.uri, "--index", index)
    assert done.exit_code == 1 and done.stderr.count("\n") == 1
    assert "missing authorization" in done.stderr and "set MILVUS_TOKEN" in done.stderr
    with pytest.raises(MilvusError, match=r"Milvus v2\.2\.16 at http://h:1 is too old.* 2\.3 on"):
        server_of("v2.2.16", "http://h:1")
    assert server_of("v2.5.4", "http://h:1").version == (2, 5)


def test_lite_path_that_is_no_database_is_named(tmp_path):
    """A FIFO, a device, a file, a folder of other files (or a link to one) given as the Milvus
    Lite database: one line naming what it is, before Milvus Lite touches it."""
    index = planted(tmp_path / "index", "clip")
    fifo, folder, plain = tmp_path / "fifo.db", tmp_path / "mine.db", tmp_path / "plain.db"
    os.mkfifo(fifo)
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    plain.write_bytes(b"SQLite format 3\0")
    (tmp_path / "link.db").symlink_to(fifo)
    (tmp_path / "null.db").symlink_to("/dev/null")
    said = {
        fifo: "is a FIFO", folder: "is a folder of other files", plain: "is a file",
        tmp_path / "link.db": "is a link to a FIFO",
        tmp_path / "null.db": "is a link to a character device",
    }  # fmt: skip
    for uri, what in said.items():
        query = ("search", PHOTOS / "flat" / "cat.jpg", "--weights", TINY_BIRDER)
        for args in (("export", "--format", "milvus", "--uri", uri), (*query, "--milvus", uri)):
            done = invoke(*args, "--index", index)
            assert done.exit_code == 1 and done.stderr.count("\n") == 1, done.output
            assert (
                done.stderr == f"error: {uri} {what}, not a Milvus Lite database (a folder "
                "Milvus Lite makes): give a new path ending in .db (./photos.milvus.db)\n"
            )
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # nothing written there
    assert export(index, Target(str(tmp_path / "new.db"), "photos"))["entities"] == 1
    assert export(index, Target(str(tmp_path / "new.db"), "photos"))["upserted"] == 0
