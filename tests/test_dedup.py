"""Dedup on catalogs filled directly: real photos and their edits (exact and pHash tiers),
planted vectors (CLIP tiers), the k-NN graph against exact search, keep rules, the reports,
the quarantine script and the CLI. The e2e run through `index build` is test_dedup_e2e.py.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CORPUS,
    PHOTOS,
    Gallery,
    files_of,
    fill_from_files,
    fill_planted,
    make_variants,
    names,
    run_script,
)
from PIL import Image
from typer.testing import CliRunner

from indexer import imaging
from indexer.dedup import DedupOptions, KeepRuleError, dedup
from indexer.dedup.graph import EXACT_MAX, UnionFind, cosine_pairs, hamming_pairs
from indexer.dedup.keep import choose_keep
from indexer.dedup.review import summarize
from indexer.files import content_hash, human_size


def corpus() -> list[Path]:
    """Every picture of the shared corpus (the text files are not pictures)."""
    return [PHOTOS / p for p in CORPUS]


def _phash(path: Path) -> int:
    return imaging.perceptual_hash(imaging.open_image(path)[0])


# --- tiers on real photos --------------------------------------------------------------------
def test_exact_tier_is_byte_identical_copies(tmp_path):
    fill_from_files(tmp_path / "index", corpus())
    report = dedup(tmp_path / "index")
    exact = [g for g in report.groups if g.tier == "exact"]
    bee = next(g for g in exact if any(m["path"].endswith("/bee.jpg") for m in g.members))
    assert {m["path"] for m in bee.members} == {
        str(PHOTOS / "flat" / "bee.jpg"),
        str(PHOTOS / "heic" / "bee.jpg"),
        str(PHOTOS / "nested" / "misc" / "bees" / "bee.jpg"),
    }
    assert bee.min_score == bee.max_score == 1.0 and bee.threshold == 1.0
    assert all(m["score"] == 1.0 for m in bee.members)
    # every exact group is one content: same bytes, and nothing identical is left out
    by_hash: dict[str, list[str]] = {}
    for p in corpus():
        by_hash.setdefault(content_hash(p), []).append(str(p))
    expected = sorted(sorted(v) for v in by_hash.values() if len(v) > 1)
    assert sorted(sorted(m["path"] for m in g.members) for g in exact) == expected
    # the same bee as GIF and HEIC is near-identical, and that group names the exact group
    near = next(g for g in report.groups if g.tier == "near-identical" and bee.id in g.contains)
    assert {Path(m["path"]).name for m in near.members} == {
        "bee.jpg",
        "bee_animated.gif",
        "bee.heic",
    }


def test_edits_are_near_identical_and_distinct_photos_never(tmp_path):
    originals = [
        PHOTOS / "flat" / n
        for n in ("cake.jpg", "books.jpg", "boats on a lake.png", "tree.webp", "black kitty.jpeg")
    ]
    variants = {o: make_variants(o, tmp_path / "edits" / o.stem) for o in originals}
    flat = [p for p in corpus() if p.parent.name == "flat"]
    fill_from_files(tmp_path / "index", flat + [v for vs in variants.values() for v in vs])
    report = dedup(tmp_path / "index")
    near = [{m["path"] for m in g.members} for g in report.groups if g.tier == "near-identical"]
    kinds = {g.relation for g in report.groups if g.tier == "near-identical"}
    assert kinds == {"copies", "edits"}
    for original, edits in variants.items():
        group = set().union(*(g for g in near if str(original) in g))
        assert {str(original), *map(str, edits)} <= group, original.name
        # half size, quality 60 and WebP are copies of it; the 3 % crop is an edit
        copies = next(g for g in report.groups if g.tier == "near-identical" and g.relation ==
                      "copies" and str(original) in {m["path"] for m in g.members})  # fmt: skip
        crop = next(str(e) for e in edits if e.name.endswith("-crop.jpg"))
        assert {m["path"] for m in copies.members} == {str(original), *map(str, edits)} - {crop}
    # a near-identical group holds one photo and its edits (bee.jpg and its GIF are one photo)
    for group in near:
        photos = {Path(p).name for p in group if "/edits/" not in p} - {"bee_animated.gif"}
        assert len(photos) == 1, group
    # and every pair of distinct corpus photos is far above the threshold: not luck
    hashes = [_phash(p) for p in flat if p.name != "bee_animated.gif"]
    closest = min(imaging.hamming(a, b) for a, b in itertools.combinations(hashes, 2))
    assert closest > DedupOptions().hamming


# --- CLIP tiers with planted vectors ---------------------------------------------------------
def test_clip_tiers_with_planted_vectors(tmp_path):
    rng = np.random.default_rng(0)
    base, other, third = (rng.standard_normal(32) for _ in range(3))

    def unit(v):
        return np.asarray(v, np.float32) / np.linalg.norm(v)

    def noisy(v, amount):
        return unit(v) + amount * unit(rng.standard_normal(32))

    pictures = {
        "a.jpg": {"vector": base},
        "a-edit.jpg": {"vector": noisy(base, 0.05)},
        "a-burst.jpg": {"vector": noisy(base, 0.5)},
        "b.jpg": {"vector": other},
        # c and c-small are near-identical by pHash: their CLIP link must not be reported again
        # (hashes of real pictures have about 32 bits set: a flat picture's few bits link nothing)
        "c.jpg": {"vector": third, "phash": 0x0F0F0F0F0F0F0F0F},
        "c-small.jpg": {"vector": noisy(third, 0.01), "phash": 0x0F0F0F0F0F0F0F0E},
        "c-edit.jpg": {"vector": noisy(third, 0.15), "phash": 0x70F0F0F0F0F0F0F0},
    }
    fill_planted(tmp_path / "index", pictures, tmp_path)
    v = {k: unit(p["vector"]) for k, p in pictures.items()}

    def cos(x, y):
        return float(v[x] @ v[y])

    assert cos("a.jpg", "a-edit.jpg") > 0.95 > cos("a.jpg", "a-burst.jpg") > 0.8
    assert cos("c.jpg", "c-edit.jpg") > 0.95 and cos("c-small.jpg", "c-edit.jpg") > 0.95

    report = dedup(tmp_path / "index")
    assert names(report, "near-identical") == [{"c.jpg", "c-small.jpg"}]
    assert sorted(names(report, "near-duplicate"), key=len) == [
        {"a.jpg", "a-edit.jpg"},
        {"c.jpg", "c-small.jpg", "c-edit.jpg"},
    ]
    assert names(report, "similar") == []  # off by default
    ni = next(g for g in report.groups if g.tier == "near-identical")
    a_grp, c_grp = sorted(
        (g for g in report.groups if g.tier == "near-duplicate"), key=lambda g: len(g.members)
    )
    edit = cos("a.jpg", "a-edit.jpg")
    assert a_grp.min_score == a_grp.max_score == pytest.approx(edit, abs=1e-5)
    assert a_grp.threshold == 0.95 and a_grp.contains == []
    assert c_grp.contains == [ni.id]
    # the c group is a star around its kept file (c-edit, the most pixels): the near-identical
    # group joins through its own kept file (c-small), so the one link is c-small to c-edit
    assert c_grp.keep.endswith("c-edit.jpg") and ni.keep.endswith("c-small.jpg")
    link = cos("c-small.jpg", "c-edit.jpg")
    assert (c_grp.min_score, c_grp.max_score) == pytest.approx((link, link), abs=1e-5)
    assert ni.min_score == pytest.approx(1 - 1 / 64) and ni.threshold == 10
    # the kept file has the most pixels; scores are cosines to it
    assert a_grp.keep.endswith("a-edit.jpg") and a_grp.reason == "more pixels (200×100 vs 100×100)"
    scores = {Path(m["path"]).name: m["score"] for m in a_grp.members}
    assert scores == pytest.approx({"a-edit.jpg": 1.0, "a.jpg": edit}, abs=1e-5)

    bursts = [cos("a-burst.jpg", x) for x in ("a.jpg", "a-edit.jpg")]
    report = dedup(tmp_path / "index", DedupOptions(similar=min(bursts) - 0.01))
    sim = [g for g in report.groups if g.tier == "similar"]
    assert [{Path(m["path"]).name for m in g.members} for g in sim] == [
        {"a.jpg", "a-edit.jpg", "a-burst.jpg"}
    ]
    a_grp = next(g for g in report.groups if g.tier == "near-duplicate" and len(g.members) == 2)
    assert sim[0].contains == [a_grp.id]
    assert sim[0].threshold == pytest.approx(min(bursts) - 0.01)
    # kept: a-burst (most pixels); the near-duplicate group joins through its kept a-edit
    assert sim[0].keep.endswith("a-burst.jpg")
    assert (sim[0].min_score, sim[0].max_score) == pytest.approx((bursts[1], bursts[1]), abs=1e-5)
    assert report.thresholds["similar"] == pytest.approx(min(bursts) - 0.01)
    # a stricter near-duplicate threshold moves the edit pair down to the similar tier
    report = dedup(tmp_path / "index", DedupOptions(near_duplicate=0.9995, similar=0.9))
    assert {"a.jpg", "a-edit.jpg"} in names(report, "similar")
    assert {"a.jpg", "a-edit.jpg"} not in names(report, "near-duplicate")


# --- the graph -------------------------------------------------------------------------------
def exact_truth(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    sims = x @ x.T
    hits = np.nonzero(np.triu(sims >= threshold, 1))
    return {(int(i), int(j)) for i, j in zip(*hits, strict=True)}


def planted(n: int, dim: int, copies: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x[n - copies :] = x[:copies] + 0.12 * rng.standard_normal((copies, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_graph_exact_and_partitioned_against_brute_force():
    x = planted(3000, 32, 150, seed=3)
    truth = exact_truth(x, 0.97)
    assert len(truth) >= 100
    exact = cosine_pairs(np.arange(3000), x, 0.97)
    assert exact.info["method"] == "exact" and exact.as_set() == truth
    ivf = cosine_pairs(np.arange(3000), x, 0.97, cells=64)
    assert ivf.info["method"] == "ivf" and ivf.info["cells"] == 64
    assert len(ivf.as_set() & truth) / len(truth) >= 0.95 and ivf.as_set() <= truth
    # beyond EXACT_MAX the partition is chosen and its probes tuned on a sample
    n = EXACT_MAX + 1000
    x = planted(n, 32, 300, seed=4)
    truth = exact_truth(x, 0.97)
    auto = cosine_pairs(np.arange(n) + 1000, x, 0.97)  # ids need not be positions
    assert auto.info["method"] == "ivf" and auto.info["sample_recall"] >= 0.99
    found = {(a - 1000, b - 1000) for a, b in auto.as_set()}
    assert len(found & truth) / len(truth) >= 0.95 and found <= truth
    assert np.all(auto.score >= 0.97) and np.all(auto.a < auto.b)


def test_knn_graph_caps_neighbours_but_keeps_groups_whole():
    rng = np.random.default_rng(5)
    x = np.repeat(rng.standard_normal((1, 16)), 40, axis=0) + 1e-4 * rng.standard_normal((40, 16))
    x = np.vstack([x, rng.standard_normal((200, 16))]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs = cosine_pairs(np.arange(240), x, 0.99, k=4)
    degree = np.bincount(np.concatenate([pairs.a, pairs.b]), minlength=240)
    assert 0 < len(pairs) < 40 * 39 / 2 and degree[:40].min() >= 4
    uf = UnionFind()
    for a, b in pairs.as_set():
        uf.union(a, b)
    assert uf.groups() == [list(range(40))]


def test_hamming_pairs_match_brute_force():
    rng = np.random.default_rng(1)
    hashes = rng.integers(-(2**63), 2**63 - 1, 400, dtype=np.int64)
    for i in range(40):  # near copies: flip up to 12 bits
        flips = rng.choice(64, rng.integers(0, 13), replace=False)
        value = int(hashes[i]) & 0xFFFFFFFFFFFFFFFF
        for bit in flips:
            value ^= 1 << int(bit)
        hashes[200 + i] = value - (1 << 64) if value >= 1 << 63 else value
    ids = np.arange(400) * 7
    pairs = hamming_pairs(ids, hashes, 10)
    truth = {
        (int(ids[i]), int(ids[j]))
        for i, j in itertools.combinations(range(400), 2)
        if imaging.hamming(int(hashes[i]), int(hashes[j])) <= 10
    }
    assert 20 < len(truth) and pairs.as_set() == truth
    for a, b, d in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.score.tolist(), strict=True):
        assert d == imaging.hamming(int(hashes[a // 7]), int(hashes[b // 7]))


def test_union_find():
    uf = UnionFind()
    for a, b in [(1, 2), (3, 4), (2, 4), (10, 11)]:
        uf.union(a, b)
    uf.find(99)
    assert uf.groups() == [[1, 2, 3, 4], [10, 11]]
    assert uf.find(1) == uf.find(3) != uf.find(10)


# --- keep rules ------------------------------------------------------------------------------
MEMBERS = [
    {"path": "/p/a.jpg", "width": 4000, "height": 3000, "format": "JPEG", "size": 10,
     "taken_at": "2020-01-01T00:00:00", "mtime_ns": 5 * 10**18},
    {"path": "/p/b.heic", "width": 4000, "height": 3000, "format": "HEIF", "size": 5,
     "taken_at": None, "mtime_ns": 16 * 10**17},
    {"path": "/best/sub/c.png", "width": 800, "height": 600, "format": "PNG", "size": 99,
     "taken_at": "2019-06-01T12:00:00", "mtime_ns": 9 * 10**18},
    {"path": "/p/d.jpg", "width": 4000, "height": 3000, "format": "MPO", "size": 10,
     "taken_at": "2021-01-01T00:00:00", "mtime_ns": 5 * 10**18},
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "prefer", "kept", "reason"),
    [
        ("resolution,format:heic>png>jpg,size", (), "/p/b.heic", "preferred format (HEIF)"),
        ("resolution,format:jpg>heic", (), "/p/a.jpg", "all criteria tie: first path in order"),
        ("resolution,format:jpg,exif,oldest", (), "/p/a.jpg", "oldest (taken 2020-01-01T00:00:00)"),
        ("resolution,newest", (), "/p/d.jpg", "newest (taken 2021-01-01T00:00:00)"),
        ("size", (), "/best/sub/c.png", "largest file (99 bytes)"),
        ("exif,format:png>jpg", (), "/best/sub/c.png", "preferred format (PNG)"),
        ("resolution", ("/best",), "/best/sub/c.png", "in preferred folder /best"),
        ("format:heic", ("/nowhere", "/p"), "/p/b.heic", "preferred format (HEIF)"),
        ("shortest-path", (), "/p/a.jpg", "all criteria tie: first path in order"),
        ("oldest", (), "/best/sub/c.png", "oldest (taken 2019-06-01T12:00:00)"),
    ],
)
def test_keep_rules(rule, prefer, kept, reason):
    member, why = choose_keep(MEMBERS, rule, prefer)
    assert (member["path"], why) == (kept, reason)


def test_keep_rule_errors():
    for rule in ("prettiest", "", "format:", "resolution,,bigness"):
        with pytest.raises(KeepRuleError):
            choose_keep(MEMBERS, rule)
    assert choose_keep(MEMBERS[:1])[1] == "only member"
    kept, why = choose_keep(MEMBERS[:2], "exif")
    assert kept is MEMBERS[0] and why == "has an EXIF date (taken 2020-01-01T00:00:00)"


def test_bad_options_are_refused(tmp_path):
    fill_planted(tmp_path / "index", {"a.jpg": {"vector": [1.0, 0.0]}}, tmp_path)
    for options in (
        DedupOptions(hamming=-1),
        DedupOptions(near_duplicate=1.5),
        DedupOptions(similar=0.97),  # must be below near_duplicate
        DedupOptions(keep="bigness"),
    ):
        with pytest.raises(ValueError):
            dedup(tmp_path / "index", options)


# --- reports and the quarantine script on real files ----------------------------------------
@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A small photo library: real photos, byte copies, edits, awkward names."""
    lib = tmp_path / "library"
    (lib / "best").mkdir(parents=True)
    (lib / "camera roll" / "2024").mkdir(parents=True)
    shutil.copy(PHOTOS / "flat" / "bee.jpg", lib / "camera roll" / "bee.jpg")
    shutil.copy(PHOTOS / "flat" / "bee.jpg", lib / "camera roll" / "2024" / "bee copy.jpg")
    shutil.copy(PHOTOS / "flat" / "bee.jpg", lib / "best" / "bee.jpg")
    shutil.copy(PHOTOS / "flat" / "cake.jpg", lib / "camera roll" / "cake.jpg")
    shutil.copy(PHOTOS / "flat" / "cake.jpg", lib / "camera roll" / "2024" / "ケーキ\nnew line.jpg")
    shutil.copy(PHOTOS / "flat" / "books.jpg", lib / "books.jpg")
    img = Image.open(PHOTOS / "flat" / "cake.jpg")
    img.resize((img.width // 2, img.height // 2)).save(lib / "camera roll" / "cake-small.jpg")
    shutil.copy(PHOTOS / "flat" / "cat.jpg", lib / "best" / "cat.jpg")
    files = sorted(p for p in lib.rglob("*") if p.is_file())
    for age, path in enumerate(files):  # distinct times: the later a path sorts, the older
        os.utime(path, ns=(0, (1_700_000_000 - 3600 * age) * 10**9))
    return lib


def test_reports(library, tmp_path):
    fill_from_files(tmp_path / "index", sorted(p for p in library.rglob("*") if p.is_file()))
    report = dedup(tmp_path / "index", DedupOptions(prefer=(str(library / "best"),)))
    out = tmp_path / "out"
    out.mkdir()
    for ext in ("json", "csv", "html"):
        report.write(out / f"r.{ext}")
    data = json.loads((out / "r.json").read_text())
    assert set(data) >= {"groups", "thresholds", "index", "generated_at", "counts"}
    assert data["counts"] == {"exact": 2, "near-identical": 1, "near-duplicate": 0, "similar": 0}
    for g in data["groups"]:
        assert set(g) >= {"tier", "members", "keep", "reason", "min_score", "max_score"}
        assert "threshold" in g and g["keep"] in {m["path"] for m in g["members"]}
        for m in g["members"]:
            assert set(m) >= {"path", "size", "width", "height", "format", "taken_at", "score"}
    bee = next(g for g in data["groups"] if g["tier"] == "exact" and len(g["members"]) == 3)
    assert bee["keep"] == str(library / "best" / "bee.jpg")
    assert bee["reason"] == f"in preferred folder {library / 'best'}"
    rows = list(csv.DictReader(io.StringIO((out / "r.csv").read_text())))
    assert len(rows) == sum(len(g["members"]) for g in data["groups"])
    assert sum(r["keep"] == "true" for r in rows) == len(data["groups"])
    awkward = str(library / "camera roll" / "2024" / "ケーキ\nnew line.jpg")
    assert awkward in {r["path"] for r in rows}
    gallery = Gallery()
    gallery.feed((out / "r.html").read_text(encoding="utf-8"))
    assert not gallery.external and len(gallery.data["groups"]) == len(data["groups"])
    at = gallery.data["fields"].index("thumb")
    shown = [m[at] for g in gallery.data["groups"] for m in g[7]]
    assert len(shown) == sum(len(g["members"]) for g in data["groups"]) and None not in shown
    assert len(gallery.data["thumbs"]) == 3  # bee, cake, cake-small: byte copies share theirs
    for src in gallery.data["thumbs"]:
        assert src.startswith("data:image/jpeg;base64,")
        thumb = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert thumb.format == "JPEG" and max(thumb.size) <= 200
    rows = {r[0]: r[1:] for r in gallery.summary[1:]}  # link, groups, files, moved, bytes, edits
    bee_size = (library / "best" / "bee.jpg").stat().st_size
    cake_size = (library / "camera roll" / "cake.jpg").stat().st_size
    small = (library / "camera roll" / "cake-small.jpg").stat().st_size
    # each file counted once, in its widest group: the cake's byte copy moves with its
    # near-identical group, as the quarantine script moves it
    assert rows["exact"] == ["identical bytes", "2", "5", "2", human_size(2 * bee_size), "0"]
    assert rows["near-identical"][2:] == ["3", "2", human_size(cake_size + small), "0"]
    assert rows["near-identical"][0] == "pHash ≤ 10 bits apart (score ≥ 0.844)"
    assert rows["near-duplicate"][0] == "CLIP cosine ≥ 0.95" and rows["similar"][0] == "off"
    with pytest.raises(ValueError, match="unknown report type"):
        report.write(out / "r.txt")


def test_quarantine_script_moves_never_deletes(library, tmp_path):
    fill_from_files(tmp_path / "index", sorted(p for p in library.rglob("*") if p.is_file()))
    report = dedup(tmp_path / "index", DedupOptions(prefer=(str(library / "best"),)))
    script = tmp_path / "q.py"
    script.write_text(report.quarantine_script("q.py"))
    before = files_of(library)
    quarantine = tmp_path / "quarantine"

    dry = run_script(script, str(quarantine))
    assert dry.returncode == 0, dry.stderr
    assert "would move 4 files" in dry.stdout  # 2 bee copies, the cake copy and its small copy
    lines = summarize(report.groups)  # what the reports and the Duplicates page say it moves
    assert sum(lines[t].duplicates for t in ("exact", "near-identical")) == 4
    assert files_of(library) == before and not quarantine.exists()

    bee_stat = (library / "camera roll" / "bee.jpg").stat()
    # a file changed since the report is skipped, whatever its tier
    changed = library / "camera roll" / "cake-small.jpg"
    os.utime(changed, ns=(1, 1))
    moved = run_script(script, "--apply", str(quarantine))
    assert moved.returncode == 0, moved.stderr
    assert "skip (missing or changed since the report)" in moved.stdout
    after, inside = files_of(library), files_of(quarantine)
    assert set(inside) == {
        Path("camera roll/bee.jpg"),
        Path("camera roll/2024/bee copy.jpg"),
        Path("camera roll/2024/ケーキ\nnew line.jpg"),
    }
    # nothing deleted, nothing duplicated: each file is in place or at its relative path
    assert not set(after) & set(inside)
    assert {**after, **inside} == before
    assert (library / "best" / "bee.jpg").exists()
    assert (library / "camera roll" / "cake.jpg").exists()

    # a second run finds the files gone and moves nothing
    again = run_script(script, "--apply", str(quarantine))
    assert "moved 0 files" in again.stdout and files_of(quarantine) == inside
    # the same file back in place: its twin in quarantine is never overwritten
    bee = library / "camera roll" / "bee.jpg"
    bee.write_bytes((PHOTOS / "flat" / "bee.jpg").read_bytes())
    os.utime(bee, ns=(0, bee_stat.st_mtime_ns))
    third = run_script(script, "--apply", str(quarantine))
    assert "already in quarantine; not overwritten" in third.stdout
    assert "moved 0 files" in third.stdout and files_of(quarantine) == inside
    bee.unlink()

    # --restore puts them back where they were
    back = run_script(script, "--restore", "--apply", str(quarantine))
    assert back.returncode == 0 and "moved 3 files" in back.stdout
    assert files_of(library) == before and not files_of(quarantine)


def test_quarantine_script_keeps_protected_and_needs_the_kept_copy(library, tmp_path):
    shutil.copy(PHOTOS / "flat" / "cat.jpg", library / "best" / "cat again.jpg")
    fill_from_files(tmp_path / "index", sorted(p for p in library.rglob("*") if p.is_file()))
    report = dedup(tmp_path / "index", DedupOptions(prefer=(str(library / "best"),)))
    script = tmp_path / "q.py"
    script.write_text(report.quarantine_script("q.py"))
    cat = next(g for g in report.groups if g.keep.endswith("/cat.jpg"))
    assert all(m["protected"] for m in cat.members)
    (library / "camera roll" / "cake.jpg").unlink()  # the kept copy of the cake group
    quarantine = tmp_path / "quarantine"
    out = run_script(script, "--apply", "--tiers", "exact", str(quarantine)).stdout
    assert "skip (protected folder)" in out and "kept copy missing or changed" in out
    moved = files_of(quarantine)
    assert set(moved) == {Path("camera roll/bee.jpg"), Path("camera roll/2024/bee copy.jpg")}
    assert (library / "best" / "cat again.jpg").exists()
    bad = run_script(script, "--tiers", "bogus")
    assert bad.returncode != 0 and "unknown tier" in bad.stderr


# --- the command -----------------------------------------------------------------------------
def test_cli(library, tmp_path):
    from indexer.cli import app

    fill_from_files(tmp_path / "index", sorted(p for p in library.rglob("*") if p.is_file()))
    runner = CliRunner()
    index = ["dedup", "--index", str(tmp_path / "index")]
    text = runner.invoke(app, index)
    assert text.exit_code == 0, text.output
    assert "== exact" in text.output and "keep " in text.output and "3 groups" in text.output
    as_json = runner.invoke(app, [*index, "--json", "--hamming", "0", "--keep", "size,oldest"])
    data = json.loads(as_json.stdout)
    assert data["thresholds"]["hamming"] == 0 and data["counts"]["exact"] == 2
    script = tmp_path / "q.py"
    out = runner.invoke(
        app,
        [*index, "-o", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.html"),
         "--quarantine-script", str(script), "--prefer", str(library / "best"), "--similar", "0.8"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "r.json").read_text())["thresholds"]["similar"] == 0.8
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert os.access(script, os.X_OK) and "would move" in run_script(script).stdout
    for bad, message in (
        (["--keep", "prettiest"], "unknown --keep criterion"),
        (["-o", str(tmp_path / "r.txt")], ".html, .json or .csv"),
        (["--similar", "0.99"], "below --near-duplicate"),
    ):
        result = runner.invoke(app, [*index, *bad])
        assert result.exit_code == 1 and message in result.output, result.output
    missing = runner.invoke(app, ["dedup", "--index", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "no index at" in missing.output
