"""The index folder as hostile input: crafted on disk (links, lying FAISS headers, SQL we did not
write, sparse photos, umask), then used through the commands a person types."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import PHOTOS, TINY_BIRDER, index_cli, invoke

from indexer.build import build
from indexer.settings import Settings
from indexer.store.catalog import Catalog
from indexer.thumbs import thumbnail_bytes, thumbnail_path

QUERY = PHOTOS / "flat" / "cat.jpg"
SECRET = b"root:x:0:0:secret line that must never leave its file\n" * 20


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_encoder) -> Path:
    """An index of the flat folder (22 pictures), built once; tests use copies of it."""
    root = tmp_path_factory.mktemp("hostile")
    index = root / "index"
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build([PHOTOS / "flat"], settings, encoder=tiny_encoder)
    return index


@pytest.fixture
def index(pristine, tmp_path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the index that nothing may read or write."""
    path = tmp_path / "victim"
    path.write_bytes(SECRET)
    return path


def search_json(index: Path, *extra: object) -> tuple[int, list[dict], str]:
    result = invoke("search", QUERY, "--index", index, "--weights", TINY_BIRDER, "--json", *extra)
    hits = json.loads(result.stdout) if result.exit_code == 0 else []
    return result.exit_code, hits, result.stderr


def restate(index: Path, data: bytes) -> None:
    """Put `data` in vectors.faiss with a state that matches it, as whoever edits one of the
    pair would: checksum, size, header fields all recomputed."""
    (index / "vectors.faiss").write_bytes(data)
    state = json.loads((index / "vectors.json").read_text())
    dim, ntotal = struct.unpack_from("<iq", data, 4)
    state.update(
        faiss_bytes=len(data),
        faiss_blake2b=hashlib.blake2b(data, digest_size=16).hexdigest(),
        dim=dim,
        ntotal=ntotal,
    )
    (index / "vectors.json").write_text(json.dumps(state))


# ------------------------------------------------------------------------------ the lock
@pytest.mark.parametrize("command", [["gc"], ["verify", "--repair"]])
def test_a_linked_lock_file_is_refused_and_its_target_untouched(index, victim, command):
    (index / "write.lock").unlink(missing_ok=True)
    (index / "write.lock").symlink_to(victim)
    (index / "vectors.faiss").unlink()  # something for --repair to do (under the lock)
    result = invoke(*command, "--index", index)
    assert result.exit_code == 1, result.output
    assert "write.lock: is a symbolic link" in result.stderr
    assert "Traceback" not in result.output
    assert victim.read_bytes() == SECRET


def test_a_hard_linked_lock_file_is_refused_and_its_target_untouched(index, victim):
    (index / "write.lock").unlink(missing_ok=True)
    os.link(victim, index / "write.lock")
    result = invoke("build", PHOTOS / "flat", "--index", index, "--weights", TINY_BIRDER, "-q")
    assert result.exit_code == 1, result.output
    assert "write.lock: is a file with other names (a hard link)" in result.stderr
    assert victim.read_bytes() == SECRET


def test_a_busy_lock_names_a_pid_never_the_files_bytes(index):
    (index / "write.lock").write_bytes(b"not a pid: " + SECRET[:40])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(index / "write.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke("gc", "--index", index)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert "(pid ?)" in result.stderr and "secret" not in result.stderr


# ------------------------------------------------------------------------- thumbnails
def test_a_thumbnail_linked_outside_is_never_read(index, victim, tmp_path):
    cat = Catalog(index, readonly=True)
    try:
        record = next(r for r in cat.records() if r["path"].endswith("cat.jpg"))
        path = thumbnail_path(index, record["hash"], 200)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.symlink_to(victim)
        data = thumbnail_bytes(cat, record["content_id"], 200)
    finally:
        cat.close()
    assert data is not None and data.startswith(b"\xff\xd8\xff") and SECRET[:20] not in data
    assert not path.is_symlink()  # rendered again in its place
    assert victim.read_bytes() == SECRET


def test_a_thumbnail_folder_linked_outside_gets_no_writes(index, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(index / "thumbs", ignore_errors=True)
    (index / "thumbs").mkdir()
    (index / "thumbs" / "200").symlink_to(outside, target_is_directory=True)
    cat = Catalog(index, readonly=True)
    try:
        ids = [r["content_id"] for r in cat.records()]
        shown = [thumbnail_bytes(cat, cid, 200) for cid in ids]
    finally:
        cat.close()
    assert all(d is not None and d.startswith(b"\xff\xd8\xff") for d in shown)
    assert list(outside.iterdir()) == []


def test_the_dedup_report_never_inlines_a_linked_file(index, victim, tmp_path):
    from indexer.dedup.report import THUMB_SIZE

    cat = Catalog(index, readonly=True)
    try:
        planted = [thumbnail_path(index, r["hash"], THUMB_SIZE) for r in cat.records()]
    finally:
        cat.close()
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.symlink_to(victim)
    report = tmp_path / "r.html"
    result = invoke("dedup", "--index", index, "-o", report)
    assert result.exit_code == 0, result.output
    import base64

    assert base64.b64encode(SECRET[:30])[:20] not in report.read_bytes()
    assert victim.read_bytes() == SECRET


def test_the_duplicates_page_shows_no_traceback_for_a_planted_thumbnail(index, victim, monkeypatch):
    from conftest import APP
    from streamlit.testing.v1 import AppTest

    cat = Catalog(index, readonly=True)
    try:
        planted = [thumbnail_path(index, r["hash"], 256) for r in cat.records()]
    finally:
        cat.close()
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_bytes(b"\xff\xd8\xff not a jpeg at all")
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(index))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/duplicates.py").run()
    assert not at.exception
    redone = [p for p in planted if p.read_bytes()[-2:] == b"\xff\xd9"]
    assert redone, "the thumbnails the page showed were rendered again from the photos"


# ---------------------------------------------------------------------------- FAISS file
def test_a_faiss_header_claiming_a_huge_ntotal_is_rebuilt_from_the_catalog(index):
    code, before, _ = search_json(index)
    assert code == 0 and before
    data = bytearray((index / "vectors.faiss").read_bytes())
    for at in (8, data.find(b"IxFI") + 8):  # the IDMap's and the inner flat index's ntotal
        struct.pack_into("<q", data, at, 1 << 42)
    restate(index, bytes(data))

    code, hits, err = search_json(index)
    assert code == 0 and hits == before
    assert err.count("note:") == 1 and "claims 4398046511104 vectors" in err

    result = invoke("verify", "--index", index)
    assert result.exit_code == 1 and "FAISS index file is bad" in result.stdout
    result = invoke("verify", "--repair", "--index", index)
    assert result.exit_code == 0, result.output
    assert invoke("verify", "--index", index).exit_code == 0
    assert search_json(index)[1] == before


def test_a_lying_inner_length_fails_fast_without_allocating_it(index):
    """Header right, an array length inside lying (256 GB): FAISS is stopped by the file's own
    size before it allocates (no MemoryError), and the build rebuilds the file."""
    data = bytearray((index / "vectors.faiss").read_bytes())
    codes = data.find(b"IxFI") + 4 + 4 + 8 + 8 + 8 + 1 + 4  # the flat codes' length field
    struct.pack_into("<Q", data, codes, 1 << 36)  # x 4 bytes: 256 GB
    restate(index, bytes(data))
    result = index_cli(
        "build", PHOTOS / "flat", "--index", index, "--weights", TINY_BIRDER, "-q", timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "FAISS cannot read it" in result.stderr and "rebuilding it" in result.stderr
    assert "Traceback" not in result.stderr
    assert invoke("verify", "--index", index).exit_code == 0


def test_a_faiss_file_of_another_dimension_is_not_searched(index):
    code, before, _ = search_json(index)
    ids = faiss.vector_to_array(faiss.read_index(str(index / "vectors.faiss")).id_map)
    other = faiss.IndexIDMap2(faiss.IndexFlatIP(8))
    other.add_with_ids(np.random.default_rng(0).random((len(ids), 8), dtype=np.float32), ids)
    restate(index, faiss.serialize_index(other).tobytes())

    code, hits, err = search_json(index)
    assert code == 0 and hits == before and "Traceback" not in err
    assert "holds 8-d vectors" in err
    result = invoke("verify", "--index", index)
    assert result.exit_code == 1 and "holds 8-d vectors" in result.stdout
    assert invoke("verify", "--repair", "--index", index).exit_code == 0
    assert search_json(index) == (0, before, "")


def test_a_linked_faiss_file_is_not_read(index, victim):
    code, before, _ = search_json(index)
    (index / "vectors.faiss").unlink()
    (index / "vectors.faiss").symlink_to(victim)
    code, hits, err = search_json(index)
    assert code == 0 and hits == before and "is a symbolic link" in err
    assert invoke("verify", "--repair", "--index", index).exit_code == 0
    assert not (index / "vectors.faiss").is_symlink() and victim.read_bytes() == SECRET


# ---------------------------------------------------------------------- SQL we did not write
def add_sql(index: Path, *statements: str) -> None:
    with closing(sqlite3.connect(index / "catalog.sqlite")) as conn, conn:
        for statement in statements:
            conn.execute(statement)


EVIL = (
    "CREATE TABLE loot (path TEXT)",
    "CREATE TRIGGER steal AFTER INSERT ON runs BEGIN "
    "INSERT INTO loot SELECT path FROM files; DELETE FROM decisions; END",
)


def test_a_foreign_trigger_is_refused_reported_and_repaired(index):
    assert invoke("decide", "keep", PHOTOS / "flat" / "cat.jpg", "--index", index).exit_code == 0
    add_sql(index, *EVIL)
    build_args = ("build", PHOTOS / "flat", "--index", index, "--weights", TINY_BIRDER, "-q")
    result = invoke(*build_args)
    assert result.exit_code == 1
    assert "trigger 'steal' on 'runs'" in result.stderr and "table 'loot'" in result.stderr
    assert result.stderr.count("\n") == 1
    for command in (("stats",), ("dedup",), ("decide", "list")):
        assert invoke(*command, "--index", index).exit_code == 1
    code, _, err = search_json(index)
    assert code == 1 and "trigger 'steal'" in err

    result = invoke("verify", "--index", index)
    assert result.exit_code == 1 and "SQL photo-index did not write" in result.stdout
    result = invoke("verify", "--repair", "--index", index)
    assert result.exit_code == 0, result.output
    kept = [p for p in index.iterdir() if ".damaged-" in p.name and "-" not in p.suffix[-4:]]
    assert kept, "the old catalog is kept beside the new one"
    assert invoke(*build_args).exit_code == 0
    with closing(sqlite3.connect(index / "catalog.sqlite")) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "steal" not in names and "loot" not in names
        assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 1


def test_a_recursive_trigger_cannot_hang_a_build(index):
    add_sql(
        index,
        "CREATE TRIGGER spin AFTER INSERT ON runs BEGIN "
        "INSERT INTO meta SELECT 'k' || x, x FROM (WITH RECURSIVE c(x) AS "
        "(SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c); END",
    )
    result = index_cli(
        "build", PHOTOS / "flat", "--index", index, "--weights", TINY_BIRDER, "-q", timeout=120
    )
    assert result.returncode == 1 and "trigger 'spin' on 'runs'" in result.stderr


def test_a_redefined_table_is_named(index):
    add_sql(
        index,
        "ALTER TABLE failures RENAME TO old_failures",
        "CREATE VIEW failures AS SELECT * FROM old_failures",
    )
    result = invoke("stats", "--index", index)
    assert result.exit_code == 1
    assert "view 'failures'" in result.stderr and "table 'old_failures'" in result.stderr


# ------------------------------------------------------------------- sparse and huge photos
def test_sparse_and_oversized_files_are_ledgered_unread(tmp_path, tiny_encoder):
    photos = tmp_path / "photos"
    shutil.copytree(PHOTOS / "flat", photos)
    with open(photos / "huge.jpg", "wb") as fh:  # 300 MB of holes behind a JPEG signature
        fh.write((PHOTOS / "flat" / "cat.jpg").read_bytes()[:4096])
        fh.truncate(300 << 20)
    if os.stat(photos / "huge.jpg").st_blocks * 512 > 16 << 20:
        pytest.skip("this filesystem does not keep sparse files")
    settings = Settings.from_env(
        env={}, index=tmp_path / "index", weights=str(TINY_BIRDER), workers=1, max_file_mb=0.5
    )
    summary = build([photos], settings, encoder=tiny_encoder)
    ledger = {Path(f["path"]).name: f["reason"] for f in Catalog(settings.index).failures()}
    assert ledger["huge.jpg"].startswith("file is 300.0 MB, over --max-file-mb 0.5")
    big = [p.name for p in photos.iterdir() if p.stat().st_size > 0.5 * 2**20 and p.suffix]
    assert big and all("over --max-file-mb" in ledger[name] for name in big)
    assert summary.images == len([p for p in photos.iterdir() if p.name not in ledger]) - 1

    settings = Settings.from_env(
        env={}, index=tmp_path / "index2", weights=str(TINY_BIRDER), workers=1
    )
    build([photos], settings, encoder=tiny_encoder)
    ledger = {Path(f["path"]).name: f["reason"] for f in Catalog(settings.index).failures()}
    assert ledger["huge.jpg"].startswith("sparse file: 300.0 MB long")


# ------------------------------------------------------------------------------ privacy
def test_files_the_index_writes_honour_the_umask(tmp_path, tiny_encoder):
    old = os.umask(0o077)
    try:
        settings = Settings.from_env(
            env={}, index=tmp_path / "deep" / "index", weights=str(TINY_BIRDER), workers=1
        )
        build([PHOTOS / "flat"], settings, encoder=tiny_encoder)
        cat = Catalog(settings.index, readonly=True)
        thumbnail_bytes(cat, cat.records()[0]["content_id"], 128)
        cat.close()
        script = tmp_path / "q.py"
        assert invoke("dedup", "--index", settings.index, "--quarantine-script", script)
    finally:
        os.umask(old)
    made = [tmp_path / "deep", *(tmp_path / "deep").rglob("*"), script]
    assert {p.name for p in made} >= {"catalog.sqlite", "vectors.faiss", "vectors.json", "q.py"}
    loose = [(p, oct(p.stat().st_mode)) for p in made if p.stat().st_mode & 0o077]
    assert loose == []
    assert script.stat().st_mode & 0o700 == 0o700
