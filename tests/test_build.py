"""`index build` on the real photo corpus: counts, ledger, incremental runs, moves, edits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS_CONTENTS
from PIL import Image

from indexer.build import BuildError, build
from indexer.search import Searcher
from indexer.store.catalog import Catalog
from indexer.verify import verify


def readable_images(root: Path) -> set[str]:
    """Oracle: every non-hidden file under root that PIL can fully decode."""
    found = set()
    for p in root.rglob("*"):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        try:
            with Image.open(p) as im:
                im.load()
            found.add(str(p))
        except Exception:
            pass
    return found


def test_first_build_indexes_every_readable_image(photos, settings, tiny_encoder):
    # text named like a picture claims to be one: ledgered; text named .txt/.md is skipped
    (photos / "flat" / "not-an-image.jpg").write_bytes(
        (photos / "flat" / "not-an-image.txt").read_bytes()
    )
    (photos / "flat" / "empty.jpg").write_bytes(b"")  # refused at the scan
    summary = build([photos], settings, encoder=tiny_encoder)
    cat = Catalog(settings.index, readonly=True)
    paths = {r["path"] for r in cat.records()}
    assert paths == readable_images(photos)
    assert summary.images == len(paths)
    # the summary adds up: what is new was indexed; each failure (scan or decode) counts once
    assert summary.new == len(paths) and summary.failed == 2 == len(cat.failures())
    # byte-identical copies share one vector
    hashes = {r["hash"] for r in cat.records()}
    assert summary.embedded == len(hashes) == summary.vectors == CORPUS_CONTENTS < len(paths)
    failures = {Path(f["path"]).name: f for f in cat.failures()}
    assert "not an image" in failures["not-an-image.jpg"]["reason"]
    assert "not-an-image.txt" not in failures and "README.md" not in failures
    assert summary.skipped_kinds["document"] == 2
    heic = str(photos / "heic" / "bee.heic")
    try:
        import pillow_heif  # noqa: F401

        assert heic in paths
    except ImportError:
        assert "bee.heic" in failures
    assert summary.failed == summary.ledger == len(failures)
    assert summary.index_type and summary.recall_at_10 == 1.0
    # where the time went: the stages add up to the build, the embed stage is broken down
    stages = summary.stages
    assert {"scan", "plan", "embed", "index", "decode_wait", "encoding"} <= set(stages)
    assert sum(stages[k] for k in ("scan", "plan", "embed", "index")) <= summary.seconds
    assert (
        0 < stages["encoding"]
        and stages["decode_wait"] + stages["catalog_writes"] < (stages["embed"])
    )
    # metadata: dimensions as displayed, format, EXIF date and camera
    tree = next(r for r in cat.records() if r["path"].endswith("flat/tree.webp"))
    assert (tree["width"], tree["height"], tree["format"]) == (171, 256, "WEBP")
    assert tree["taken_at"] == "2022-02-19T14:48:13" and "ILCE-7M3" in tree["camera"]


def test_second_build_embeds_nothing_and_moves_are_free(photos, settings, tiny_encoder):
    first = build([photos], settings, encoder=tiny_encoder)
    again = build([photos], settings, encoder=tiny_encoder)
    assert (again.embedded, again.new, again.changed, again.deleted) == (0, 0, 0, 0)
    assert again.unchanged == first.images
    # rename and move into another folder: relinked, not re-embedded
    (photos / "flat" / "cake.jpg").rename(photos / "flat" / "birthday cake.jpg")
    (photos / "moved").mkdir()
    shutil.move(photos / "nested" / "cats" / "cat.jpg", photos / "moved" / "kitty.jpg")
    moved = build([photos], settings, encoder=tiny_encoder)
    assert moved.embedded == 0
    assert moved.moved == 2 and moved.deleted == 0 and moved.new == 0
    cat = Catalog(settings.index, readonly=True)
    paths = {r["path"] for r in cat.records()}
    assert str(photos / "moved" / "kitty.jpg") in paths
    assert str(photos / "nested" / "cats" / "cat.jpg") not in paths


def test_delete_edit_and_search(photos, settings, tiny_encoder):
    build([photos], settings, encoder=tiny_encoder)
    searcher = Searcher(settings, encoder=tiny_encoder)
    camera = photos / "nested" / "cameras" / "camera lens.jpg"
    hits = searcher.search_image(camera, k=5)
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert Path(hits[0].path).name == "camera lens.jpg"  # it and its byte-identical twin
    assert len(hits) == 5 and hits[0].score >= hits[-1].score

    # delete both copies of the picture: it leaves search
    os.remove(camera)
    os.remove(photos / "flat" / "camera lens.jpg")
    # edit a file: new content is embedded
    books = photos / "flat" / "books.jpg"
    with Image.open(books) as im:
        im.transpose(Image.FLIP_LEFT_RIGHT).save(books, quality=90)
    summary = build([photos], settings, encoder=tiny_encoder)
    assert summary.deleted == 2 and summary.changed == 1 and summary.embedded == 1
    hits = searcher.search_image(photos / "nested" / "misc" / "books.jpg", k=50)
    assert all("camera lens" not in h.path for h in hits)
    top = searcher.search_image(books, k=1)[0]
    assert top.path == str(books) and top.score == pytest.approx(1.0, abs=1e-4)
    searcher.close()
    report = verify(settings)
    assert report["problems"] == {}, report["messages"]


def test_other_weights_are_refused_unless_reindex(photos, settings, tiny_encoder, tmp_path):
    from dataclasses import replace

    from conftest import TINY_OPEN_CLIP

    build([photos / "flat"], settings, encoder=tiny_encoder)
    other = replace(settings, weights=str(TINY_OPEN_CLIP))
    with pytest.raises(BuildError, match="--reindex"):
        build([photos / "flat"], other)
    summary = build([photos / "flat"], other, reindex=True)
    assert summary.embedded == summary.vectors > 0
    ids, vecs = Catalog(settings.index, readonly=True).all_vectors()
    assert len(ids) == summary.vectors and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


def test_failed_files_are_retried_only_when_asked(photos, settings, tiny_encoder):
    bad = photos / "flat" / "broken.jpg"
    bad.write_bytes((photos / "flat" / "cat.jpg").read_bytes()[:2000])
    build([photos / "flat"], settings, encoder=tiny_encoder)
    ledger = {Path(f["path"]).name: f for f in Catalog(settings.index).failures()}
    assert ledger["broken.jpg"]["stage"] == "decode"
    assert "truncated" in ledger["broken.jpg"]["reason"]
    build([photos / "flat"], settings, encoder=tiny_encoder)
    assert Catalog(settings.index).failures()[0]["attempts"] == 1
    build([photos / "flat"], settings, encoder=tiny_encoder, retry_failed=True)
    ledger = {Path(f["path"]).name: f for f in Catalog(settings.index).failures()}
    assert ledger["broken.jpg"]["attempts"] == 2
    # fixed file leaves the ledger
    shutil.copy(photos / "flat" / "cat.jpg", bad)
    build([photos / "flat"], settings, encoder=tiny_encoder)
    ledger = {Path(f["path"]).name for f in Catalog(settings.index).failures()}
    assert "broken.jpg" not in ledger


def test_missing_root_is_a_clear_error(settings, tiny_encoder, tmp_path):
    with pytest.raises(BuildError, match="no such file or folder"):
        build([tmp_path / "nope"], settings, encoder=tiny_encoder)


def test_ledger_forgets_files_that_are_gone(photos, settings, tiny_encoder):
    (photos / "flat" / "not-an-image.jpg").write_text("I am text, not a picture\n")
    build([photos / "flat"], settings, encoder=tiny_encoder)
    assert any(f["path"].endswith("not-an-image.jpg") for f in Catalog(settings.index).failures())
    (photos / "flat" / "not-an-image.jpg").unlink()
    summary = build([photos / "flat"], settings, encoder=tiny_encoder)
    assert summary.failed == summary.ledger == 0 and Catalog(settings.index).failures() == []


def test_new_files_are_hashed_as_they_are_decoded(photos, settings, tiny_encoder):
    """A new file of a size no other file has is read once (hashed by the decode worker):
    its hash is the one the planner computes, so the next build still knows it when moved;
    a content row that no path points at any more is reused, not inserted twice."""
    from sqlalchemy import delete

    from indexer.files import content_hash
    from indexer.store.catalog import File

    first = build([photos], settings, encoder=tiny_encoder)
    cat = Catalog(settings.index)
    records = cat.records()
    assert all(r["hash"] == content_hash(r["path"]) for r in records)
    sizes = [r["size"] for r in records]
    lone = next(r for r in records if sizes.count(r["size"]) == 1)
    with cat.session() as s:  # as an older version could leave it: a content without a path
        s.execute(delete(File).where(File.path == lone["path"]))
    cat.close()
    again = build([photos], settings, encoder=tiny_encoder)
    assert (again.new, again.failed, again.ledger) == (1, 0, first.ledger)  # old failures
    assert again.vectors == first.vectors == len({r["hash"] for r in records})
    after = {r["path"]: r for r in Catalog(settings.index, readonly=True).records()}
    assert after[lone["path"]]["content_id"] == lone["content_id"]
    assert verify(settings)["problems"] == {}


def test_the_content_hash_is_pinned_and_another_one_refused(photos, settings, tiny_encoder):
    """The first build records how contents are named; a catalog naming them otherwise would
    see every picture as new, so the build refuses it."""
    build([photos / "flat"], settings, encoder=tiny_encoder)
    cat = Catalog(settings.index)
    assert cat.get_meta("content_hash") == "blake2b-256"
    with cat.session() as s:
        Catalog.set_meta(s, "content_hash", "sha1")
    cat.close()
    with pytest.raises(BuildError, match="sha1 hashes"):
        build([photos / "flat"], settings, encoder=tiny_encoder)
