"""`index build` then `index dedup` on the real photo corpus (tiny random weights) and its edits.

The tiny weights carry no meaning, so CLIP tiers are checked for structure here (nesting,
scores against thresholds); their grouping is tested with planted vectors in test_dedup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

from conftest import CORPUS, Gallery, files_of, make_variants, pictures_in, run_script

from indexer.build import build
from indexer.dedup import TIERS, DedupOptions, dedup


def check_nesting(groups: list[dict]) -> None:
    """Groups never mix tiers silently: stronger groups are wholly inside or outside weaker ones,
    `contains` names the nearest stronger groups inside, and a pair is grouped once per tier."""
    members = {g["id"]: {m["path"] for m in g["members"]} for g in groups}
    levels = [(t, r) for t in TIERS for r in ("copies", "edits")]  # a tier's copies, then edits
    level = {
        g["id"]: (g["tier"], "edits" if g["relation"] == "edits" else "copies") for g in groups
    }
    rank = {g["id"]: levels.index(level[g["id"]]) for g in groups}
    for lv in levels:
        seen: set[tuple[str, str]] = set()
        for g in (g for g in groups if level[g["id"]] == lv):
            pairs = set(combinations(sorted(members[g["id"]]), 2))
            assert not pairs & seen and len(members[g["id"]]) >= 2
            seen |= pairs
    for g in groups:
        inside = [
            h
            for h in groups
            if rank[h["id"]] < rank[g["id"]] and members[h["id"]] <= members[g["id"]]
        ]
        for h in groups:
            if rank[h["id"]] < rank[g["id"]] and members[h["id"]] & members[g["id"]]:
                assert members[h["id"]] <= members[g["id"]], (g["id"], h["id"])
        direct = {
            h["id"]
            for h in inside
            if not any(members[h["id"]] < members[o["id"]] for o in inside if o is not h)
        }
        assert set(g["contains"]) == direct, g
        # the group links at least two units: its members are not all inside one stronger group
        assert not any(members[h["id"]] == members[g["id"]] for h in inside)


def test_build_then_dedup(photos, settings, tiny_encoder, tmp_path):
    copies = {"cake.jpg": "nested/cake.jpg", "tree.webp": "nested/misc/tree.webp"}
    edits = {n: make_variants(photos / "flat" / n, photos / "edits" / Path(n).stem) for n in copies}
    summary = build([photos], settings, encoder=tiny_encoder)
    assert summary.embedded > 0
    report = dedup(settings.index, DedupOptions(similar=0.9))
    data = report.as_dict()
    check_nesting(data["groups"])

    exact = [g for g in report.groups if g.tier == "exact"]
    bee = next(g for g in exact if Path(g.keep).name == "bee.jpg")
    assert {str(Path(m["path"]).relative_to(photos)) for m in bee.members} == {
        "flat/bee.jpg",
        "heic/bee.jpg",
        "nested/misc/bees/bee.jpg",
    }
    near = [g for g in report.groups if g.tier == "near-identical"]
    for name, variants in edits.items():
        group = max(  # the widest: its edits (the crop) around its copies
            (g for g in near if str(photos / "flat" / name) in {m["path"] for m in g.members}),
            key=lambda g: len(g.members),
        )
        paths = {m["path"] for m in group.members}
        assert {str(v) for v in variants} | {str(photos / copies[name])} <= paths
        assert group.contains, "the flat/nested copies are an exact group inside it"
        assert group.threshold == 10 and 1 - 10 / 64 <= group.min_score <= group.max_score <= 1
    for group in near:  # one photo per near-identical group (bee.jpg and its GIF are one)
        photos_in = {Path(m["path"]).name for m in group.members if "/edits/" not in m["path"]}
        assert len(photos_in - {"bee_animated.gif", "bee.heic"}) == 1, photos_in
    for g in report.groups:
        if g.tier in ("near-duplicate", "similar"):
            assert g.min_score >= g.threshold and g.max_score <= 1.0001
    assert data["search"]["near-duplicate"]["method"] == "exact"


def test_cli_reports_and_quarantine(photos, settings, tiny_encoder, tmp_path):
    build([photos / "flat", photos / "nested"], settings, encoder=tiny_encoder)
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "indexer.cli", "dedup", "--index", str(settings.index)]
    run = subprocess.run(
        [
            *command,
            *("-o", str(out / "r.html"), "-o", str(out / "r.json"), "-o", str(out / "r.csv")),
            *("--quarantine-script", str(out / "q.py"), "--prefer", str(photos / "nested")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    data = json.loads((out / "r.json").read_text())
    check_nesting(data["groups"])
    exact = [g for g in data["groups"] if g["tier"] == "exact"]
    built = [CORPUS[p] for p in pictures_in("flat") + pictures_in("nested")]
    assert len(exact) == len({h for h in built if built.count(h) > 1})  # byte copies
    assert all(g["keep"].startswith(str(photos / "nested")) for g in exact)
    assert all(g["reason"] == f"in preferred folder {photos / 'nested'}" for g in exact)
    rows = (out / "r.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(len(g["members"]) for g in data["groups"])
    gallery = Gallery()
    gallery.feed((out / "r.html").read_text())
    thumbs = gallery.data["thumbs"]
    assert thumbs and all(s.startswith("data:image/jpeg;base64,") for s in thumbs)
    assert [g[2] for g in gallery.data["groups"]] == [g["keep"] for g in data["groups"]]
    assert not gallery.external

    before = files_of(photos)
    assert "would move" in run_script(out / "q.py").stdout and files_of(photos) == before
    quarantine = tmp_path / "quarantine"
    moved = run_script(out / "q.py", "--apply", str(quarantine))  # exact, near-identical
    assert moved.returncode == 0, moved.stderr
    after, inside = files_of(photos), files_of(quarantine)
    # the flat/ copies of nested/ photos, and the GIF of the bee (near-identical to it)
    assert len(inside) == sum(len(g["members"]) - 1 for g in exact) + 1 and all(
        p.parts[0] == "flat" for p in inside
    )
    assert Path("flat/bee_animated.gif") in inside
    assert {**after, **inside} == before and not set(after) & set(inside)
