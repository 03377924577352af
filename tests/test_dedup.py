"""Dedup tiers on real photos and planted vectors; keep rules; reports; the quarantine script."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.build import build
from indexer.catalog import Catalog, Content, File
from indexer.dedup import DedupOptions, dedup
from indexer.dedup.graph import UnionFind, cosine_pairs
from indexer.dedup.keep import KeepRuleError, choose_keep


def make_variants(src: Path, dest: Path) -> dict[str, Path]:
    """The edits people make: half size, JPEG quality 60, PNG→WebP, a 3 % crop."""
    dest.mkdir(parents=True, exist_ok=True)
    img = Image.open(src).convert("RGB")
    w, h = img.size
    out = {
        "half": dest / "half.jpg",
        "q60": dest / "q60.jpg",
        "crop": dest / "crop.jpg",
        "webp": dest / "from-png.webp",
    }
    img.resize((w // 2, h // 2), Image.LANCZOS).save(out["half"], quality=92)
    img.save(out["q60"], quality=60)
    dx, dy = int(w * 0.03), int(h * 0.03)
    img.crop((dx, dy, w - dx, h - dy)).save(out["crop"], quality=92)
    png = dest / "original.png"
    img.save(png)
    Image.open(png).save(out["webp"], quality=80)
    png.unlink()
    return out


def groups_of(report, tier: str) -> list[set[str]]:
    return [{Path(m["path"]).name for m in g.members} for g in report.groups if g.tier == tier]


def test_real_photos_exact_and_near_identical_tiers(photos, settings, tiny_encoder):
    variants = make_variants(photos / "flat" / "cake.jpg", photos / "edits")
    build([photos], settings, encoder=tiny_encoder)
    report = dedup(settings.index)
    exact = [g for g in report.groups if g.tier == "exact"]
    bee = next(g for g in exact if Path(g.members[0]["path"]).name == "bee.jpg")
    assert {m["path"] for m in bee.members} == {
        str(photos / "flat" / "bee.jpg"),
        str(photos / "heic" / "bee.jpg"),
        str(photos / "nested" / "misc" / "bees" / "bee.jpg"),
    }
    assert bee.min_score == bee.max_score == 1.0
    near = groups_of(report, "near-identical")
    cake = next(g for g in near if "cake.jpg" in g)
    assert {p.name for p in variants.values()} <= cake
    # distinct photos are never grouped as near-identical
    for group in near:
        stems = {n.split(".")[0] for n in group} - {"half", "q60", "crop", "from-png"}
        assert len(stems - {"bee_animated", "bee"}) <= 1, group
    g = next(
        g
        for g in report.groups
        if g.tier == "near-identical" and "cake.jpg" in {Path(m["path"]).name for m in g.members}
    )
    assert g.threshold == 10 and 0 < g.min_score <= g.max_score <= 1
    assert g.contains  # the exact cake.jpg pair is nested, not mixed in silently


def plant(index: Path, vectors: dict[str, np.ndarray], root: Path) -> None:
    cat = Catalog(index)
    with cat.session() as s:
        for i, (name, v) in enumerate(vectors.items(), start=1):
            v = (v / np.linalg.norm(v)).astype(np.float32)
            s.add(
                Content(
                    id=i,
                    hash=f"h{i}",
                    size=1000 * i,
                    width=100 * i,
                    height=100,
                    format="JPEG",
                    phash=None,
                    vector=v.tobytes(),
                    embedded_at=time.time(),
                )
            )
            s.add(
                File(
                    path=str(root / name),
                    content_id=i,
                    size=1000 * i,
                    mtime_ns=i,
                    indexed_at=time.time(),
                )
            )
        Catalog.set_meta(s, "dim", 8)


def test_clip_tiers_with_planted_vectors(tmp_path):
    rng = np.random.default_rng(0)
    base, other = rng.standard_normal(8), rng.standard_normal(8)
    vecs = {
        "a.jpg": base,
        "a-edit.jpg": base + 0.05 * rng.standard_normal(8),  # cosine ≈ 0.99
        "a-burst.jpg": base + 0.45 * rng.standard_normal(8),  # cosine ≈ 0.9
        "b.jpg": other,
    }
    plant(tmp_path / "index", vecs, tmp_path)
    unit = {k: v / np.linalg.norm(v) for k, v in vecs.items()}
    cos = float(unit["a.jpg"] @ unit["a-edit.jpg"])
    bursts = [float(unit["a-burst.jpg"] @ unit[k]) for k in ("a.jpg", "a-edit.jpg")]
    burst = max(bursts)
    assert cos > 0.95 > burst > 0.7
    report = dedup(tmp_path / "index")
    assert groups_of(report, "near-duplicate") == [{"a.jpg", "a-edit.jpg"}]
    nd = next(g for g in report.groups if g.tier == "near-duplicate")
    assert nd.min_score == pytest.approx(cos, abs=1e-5) and nd.threshold == 0.95
    assert nd.keep.endswith("a-edit.jpg") and "resolution" in nd.reason
    assert groups_of(report, "similar") == []
    report = dedup(tmp_path / "index", DedupOptions(similar=min(bursts) - 0.001))
    sim = [g for g in report.groups if g.tier == "similar"]
    assert [{Path(m["path"]).name for m in g.members} for g in sim] == [
        {"a.jpg", "a-edit.jpg", "a-burst.jpg"}
    ]
    assert sim[0].contains == [nd.id]
    assert (sim[0].min_score, sim[0].max_score) == pytest.approx(
        (min(bursts), max(bursts)), abs=1e-5
    )


def test_knn_graph_matches_exact_pairs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    x[1000:1100] = x[:100] + 0.01 * rng.standard_normal((100, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a, b, s = cosine_pairs(np.arange(3000), x, 0.98)
    sims = x @ x.T
    truth = {(i, j) for i, j in zip(*np.nonzero(np.triu(sims >= 0.98, 1)), strict=True)}
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == truth
    uf = UnionFind()
    for i, j in truth:
        uf.union(int(i), int(j))
    assert len(uf.groups()) == 100


def test_keep_rules(tmp_path):
    members = [
        {
            "path": "/p/a.jpg",
            "width": 4000,
            "height": 3000,
            "format": "JPEG",
            "size": 10,
            "taken_at": "2020-01-01T00:00:00",
            "mtime_ns": 5,
        },
        {
            "path": "/p/b.heic",
            "width": 4000,
            "height": 3000,
            "format": "HEIF",
            "size": 5,
            "taken_at": None,
            "mtime_ns": 1,
        },
        {
            "path": "/best/c.png",
            "width": 800,
            "height": 600,
            "format": "PNG",
            "size": 99,
            "taken_at": None,
            "mtime_ns": 9,
        },
    ]
    kept, why = choose_keep(members)
    assert kept["path"] == "/p/b.heic" and why == "preferred format (HEIF)"
    kept, why = choose_keep(members, "size")
    assert kept["path"] == "/best/c.png" and why.startswith("largest file")
    kept, why = choose_keep(members, "exif,resolution")
    assert kept["path"] == "/p/a.jpg" and why == "has EXIF date (EXIF date)"
    kept, why = choose_keep(members, prefer=["/best"])
    assert kept["path"] == "/best/c.png" and why == "in preferred folder /best"
    with pytest.raises(KeepRuleError, match="unknown --keep criterion"):
        choose_keep(members, "prettiest")


class _Gallery(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.kept = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "div" and "kept" in (attrs.get("class") or "").split():
            self.kept += 1


def test_reports_and_quarantine_script(photos, settings, tiny_encoder, tmp_path):
    build([photos / "flat", photos / "nested"], settings, encoder=tiny_encoder)
    out = tmp_path / "out"
    out.mkdir()
    cli = [sys.executable, "-m", "indexer.cli", "dedup", "--index", str(settings.index)]
    run = subprocess.run(
        [
            *cli,
            "-o",
            str(out / "r.html"),
            "-o",
            str(out / "r.json"),
            "-o",
            str(out / "r.csv"),
            "--quarantine-script",
            str(out / "q.py"),
            "--prefer",
            str(photos / "nested"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    data = json.loads((out / "r.json").read_text())
    for g in data["groups"]:
        assert {"tier", "members", "keep", "reason", "min_score", "max_score"} <= set(g)
        assert g["keep"] in {m["path"] for m in g["members"]}
    exact = [g for g in data["groups"] if g["tier"] == "exact"]
    assert all(g["keep"].startswith(str(photos / "nested")) for g in exact)
    rows = (out / "r.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(len(g["members"]) for g in data["groups"])
    gallery = _Gallery()
    gallery.feed((out / "r.html").read_text())
    assert gallery.images and all(s.startswith("data:image/jpeg;base64,") for s in gallery.images)
    assert gallery.kept == len(data["groups"])

    before = sorted(p for p in photos.rglob("*") if p.is_file())
    dry = subprocess.run([sys.executable, str(out / "q.py")], capture_output=True, text=True)
    assert (
        "would move" in dry.stdout and sorted(p for p in photos.rglob("*") if p.is_file()) == before
    )
    quarantine = tmp_path / "quarantine"
    moved = subprocess.run(
        [sys.executable, str(out / "q.py"), "--apply", str(quarantine)],
        capture_output=True,
        text=True,
    )
    assert moved.returncode == 0, moved.stderr
    moved_files = sorted(p for p in quarantine.rglob("*") if p.is_file())
    assert moved_files, moved.stdout
    # nothing deleted: every file is either still in place or in quarantine at its relative path
    after = {p.relative_to(photos) for p in photos.rglob("*") if p.is_file()}
    in_quarantine = {p.relative_to(quarantine) for p in moved_files}
    assert after | in_quarantine == {p.relative_to(photos) for p in before}
    assert not after & in_quarantine
    assert all(str(rel).startswith("flat") for rel in in_quarantine)  # nested/ is preferred
