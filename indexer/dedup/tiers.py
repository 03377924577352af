"""Duplicate tiers from strongest to weakest: exact → near-identical → near-duplicate → similar.

A pair of pictures belongs to the strongest tier that links them. Each tier's groups are
connected components over the previous tier's components ("units"), so a group never mixes
tiers silently: a weaker group is reported only when it joins at least two stronger units, and
`contains` names the stronger groups inside it (the tier just above; they name theirs).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from indexer.dedup.graph import Pairs, UnionFind, cosine_pairs, hamming_pairs
from indexer.dedup.keep import DEFAULT_KEEP, choose_keep, in_folders
from indexer.devices import check_device
from indexer.imaging import hamming

TIERS = ("exact", "near-identical", "near-duplicate", "similar")
MEASURES = {
    "exact": "identical bytes (content hash); score 1",
    "near-identical": "pHash: score = 1 - differing bits / 64; threshold = most differing bits",
    "near-duplicate": "CLIP cosine; threshold = least cosine",
    "similar": "CLIP cosine; threshold = least cosine",
}
MEMBER_FIELDS = (
    "path",
    "size",
    "width",
    "height",
    "format",
    "taken_at",
    "camera",
    "score",
    "mtime_ns",
    "protected",
)


@dataclass
class DedupOptions:
    """Thresholds, the keep rule and preferred folders (docs/dedup.md explains the defaults)."""

    hamming: int = 10  # near-identical: pHash bits (of 64) that may differ
    near_duplicate: float = 0.95  # near-duplicate: least CLIP cosine
    similar: float | None = None  # optional lower cosine tier (bursts, series); off by default
    keep: str = DEFAULT_KEEP
    prefer: tuple[str, ...] = ()
    k: int = 16  # neighbours per picture in the k-NN graph
    target_recall: float = 0.99  # pair recall the partitioned search is tuned for
    device: str = "auto"  # CLIP pairs: auto = exact on a CUDA GPU when there is one, else CPU

    def validate(self) -> None:
        """Raise ValueError for an option outside its range (a typo must not empty a report)."""
        if not 0 <= self.hamming <= 32:
            raise ValueError(f"--hamming {self.hamming}: use 0 to 32 bits (default 10)")
        if not 0 < self.near_duplicate <= 1:
            raise ValueError(f"--near-duplicate {self.near_duplicate}: use a cosine in (0, 1]")
        if self.similar is not None and not 0 < self.similar < self.near_duplicate:
            raise ValueError(
                f"--similar {self.similar}: use a cosine below --near-duplicate "
                f"({self.near_duplicate})"
            )
        if self.k < 1:
            raise ValueError(f"k = {self.k}: at least one neighbour")
        problem = check_device(self.device)
        if problem:
            raise ValueError(problem)
        for folder in self.prefer:
            if not os.path.isdir(folder):
                raise ValueError(f"--prefer {folder}: no such folder (name a folder of the index)")

    def thresholds(self) -> dict[str, Any]:
        """The thresholds of every tier, as the report's `thresholds` object."""
        return {
            "exact": 1.0,
            "hamming": self.hamming,
            "near_duplicate": self.near_duplicate,
            "similar": self.similar,
        }


@dataclass
class Group:
    """One group: tier, members (each scored against the kept file), kept file and why."""

    id: int
    tier: str
    members: list[dict[str, Any]]
    keep: str
    reason: str
    min_score: float
    max_score: float
    threshold: float | int
    contains: list[int] = field(default_factory=list)
    measure: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The group as JSON-ready data, like `dataclasses.asdict` but 10× faster on big reports
        (its deep copy dominated writing a big report): members are flat dicts of scalars."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["members"] = [dict(m) for m in self.members]
        out["contains"] = list(self.contains)
        return out


def find_groups(
    records: list[dict[str, Any]],
    ids: np.ndarray,
    vecs: np.ndarray,
    options: DedupOptions,
    stats: dict[str, Any] | None = None,
) -> list[Group]:
    """Every tier's groups for catalog `records` (one per path) and content vectors.

    `stats`, when given, receives the pair counts and how each search was done.
    """
    stats = {} if stats is None else stats
    by_content: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_content[int(rec["content_id"])].append(rec)
    have = np.fromiter(by_content, dtype=np.int64, count=len(by_content))
    keep_vec = np.isin(ids, have)  # contents that still have a file
    ids, vecs = ids[keep_vec], vecs[keep_vec]
    row_of = {int(c): i for i, c in enumerate(ids)}
    builder = _Builder(by_content, vecs, row_of, options)

    for cid, recs in sorted(by_content.items(), key=lambda kv: kv[1][0]["path"]):
        if len(recs) > 1:
            builder.exact(cid)
    stats["exact"] = {"contents": len(by_content), "files": len(records)}

    hashed = [(c, r[0]["phash"]) for c, r in by_content.items() if r[0]["phash"] is not None]
    h_ids = np.array([c for c, _ in hashed], np.int64)
    h_vals = np.array([h for _, h in hashed], np.int64)
    pairs = hamming_pairs(h_ids, h_vals, options.hamming)
    stats["near-identical"] = {**pairs.info, "pairs": len(pairs)}
    pairs.score = 1.0 - pairs.score / 64.0
    builder.tier("near-identical", pairs, options.hamming)

    active = [
        (tier, value)
        for tier, value in (
            ("near-duplicate", options.near_duplicate),
            ("similar", options.similar),
        )
        if value is not None
    ]
    lowest = min(v for _, v in active)
    pairs = cosine_pairs(
        ids, vecs, lowest, k=options.k, target_recall=options.target_recall, device=options.device
    )
    for tier, threshold in active:
        sel = pairs.score >= threshold
        stats[tier] = {**pairs.info, "pairs": int(sel.sum())}
        builder.tier(tier, Pairs(pairs.a[sel], pairs.b[sel], pairs.score[sel]), threshold)
    return builder.groups


class _Builder:
    """Union-find over content ids, one tier at a time, turning new components into groups."""

    def __init__(
        self,
        by_content: dict[int, list[dict[str, Any]]],
        vecs: np.ndarray,
        row_of: dict[int, int],
        options: DedupOptions,
    ) -> None:
        self.by_content = by_content
        self.vecs = vecs
        self.row_of = row_of
        self.options = options
        self.groups: list[Group] = []
        self.uf = UnionFind()
        self.members_of: dict[int, list[int]] = {}  # root → contents (components of ≥ 2)
        self.group_of: dict[int, int] = {}  # content → id of the latest group holding it

    def exact(self, cid: int) -> None:
        group = self._add("exact", [cid], [], 1.0, [])
        self.group_of[cid] = group.id

    def tier(self, tier: str, pairs: Pairs, threshold: float | int) -> None:
        """Merge the stronger components along `pairs`; report those that joined ≥ 2 units."""
        uf = self.uf
        known = [
            (x, y, s)
            for x, y, s in zip(
                pairs.a.tolist(), pairs.b.tolist(), pairs.score.tolist(), strict=True
            )
            if x in self.by_content and y in self.by_content
        ]
        before = {c: uf.find(c) for x, y, _ in known for c in (x, y)}
        links: list[tuple[int, float]] = []
        for x, y, s in known:
            if before[x] != before[y]:
                uf.union(x, y)
                links.append((x, s))
        units: dict[int, set[int]] = defaultdict(set)
        for c, unit in before.items():
            units[uf.find(c)].add(unit)
        scores: dict[int, list[float]] = defaultdict(list)
        for x, s in links:
            scores[uf.find(x)].append(s)
        comps = []
        for root, merged in units.items():
            if len(merged) < 2:
                continue
            contents = sorted(c for u in merged for c in self.members_of.get(u, [u]))
            comps.append((root, merged, contents))
        comps.sort(key=lambda item: min(r["path"] for c in item[2] for r in self.by_content[c]))
        for root, merged, contents in comps:
            contains = sorted({self.group_of[c] for c in contents if c in self.group_of})
            group = self._add(tier, contents, scores[root], threshold, contains)
            for u in merged:
                self.members_of.pop(u, None)
            self.members_of[root] = contents
            for c in contents:
                self.group_of[c] = group.id

    def _add(
        self,
        tier: str,
        contents: list[int],
        links: list[float],
        threshold: float | int,
        contains: list[int],
    ) -> Group:
        members = [dict(r) for c in contents for r in self.by_content[c]]
        kept, reason = choose_keep(members, self.options.keep, self.options.prefer)
        for m in members:
            m["score"] = self._score(tier, kept, m)
            m["protected"] = in_folders(m["path"], self.options.prefer)
        group = Group(
            id=len(self.groups) + 1,
            tier=tier,
            members=[{k: m.get(k) for k in MEMBER_FIELDS} for m in members],
            keep=kept["path"],
            reason=reason,
            min_score=round(float(min(links)), 6) if links else 1.0,
            max_score=round(float(max(links)), 6) if links else 1.0,
            threshold=threshold,
            contains=contains,
            measure=MEASURES[tier],
        )
        self.groups.append(group)
        return group

    def _score(self, tier: str, kept: dict[str, Any], member: dict[str, Any]) -> float:
        """Similarity of a member to the kept file in this tier's measure."""
        if member["content_id"] == kept["content_id"]:
            return 1.0
        if tier != "near-identical":
            a, b = self.row_of.get(member["content_id"]), self.row_of.get(kept["content_id"])
            if a is not None and b is not None:
                return round(float(np.dot(self.vecs[a], self.vecs[b])), 6)
        if member.get("phash") is not None and kept.get("phash") is not None:
            return round(1.0 - hamming(member["phash"], kept["phash"]) / 64.0, 6)
        return 0.0  # no common measure (a picture without a vector or a hash)
