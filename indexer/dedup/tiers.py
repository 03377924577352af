"""Duplicate tiers from strongest to weakest: exact → near-identical → near-duplicate → similar.

Each tier's groups are connected components over the previous tier's groups, so a group never
mixes tiers silently: a weaker group is reported only when it joins at least two stronger
units, and it names the stronger groups it contains.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from indexer.dedup.graph import UnionFind, cosine_pairs, hamming_pairs
from indexer.dedup.keep import DEFAULT_KEEP, choose_keep
from indexer.imaging import hamming

TIERS = ("exact", "near-identical", "near-duplicate", "similar")


@dataclass
class DedupOptions:
    """Thresholds and the keep rule (README "Deduplication" explains the defaults)."""

    hamming: int = 10  # near-identical: pHash bits that may differ (of 64)
    near_duplicate: float = 0.95  # CLIP cosine for near-duplicates
    similar: float | None = None  # optional lower cosine tier (bursts, series); off by default
    keep: str = DEFAULT_KEEP
    prefer: tuple[str, ...] = ()
    k: int = 16  # neighbours per picture in the k-NN graph


@dataclass
class Group:
    """One group: tier, members (each with a score against the kept file), kept file and why."""

    id: int
    tier: str
    members: list[dict[str, Any]]
    keep: str
    reason: str
    min_score: float
    max_score: float
    threshold: float | str
    contains: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


MEMBER_FIELDS = ("path", "size", "width", "height", "format", "taken_at", "camera", "score")


def find_groups(
    records: list[dict[str, Any]],
    ids: np.ndarray,
    vecs: np.ndarray,
    options: DedupOptions,
) -> list[Group]:
    """All tiers' groups for catalog `records` (one per path) and content vectors."""
    by_content: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_content[rec["content_id"]].append(rec)
    vec_of = {int(i): v for i, v in zip(ids, vecs, strict=True)}
    groups: list[Group] = []

    def add_group(tier: str, contents: list[int], edges: list[float], threshold: Any) -> Group:
        members = [dict(r) for c in contents for r in by_content[c]]
        kept, reason = choose_keep(members, options.keep, options.prefer)
        for m in members:
            m["score"] = _score(tier, kept, m, vec_of)
        group = Group(
            id=len(groups) + 1,
            tier=tier,
            members=[{k: m.get(k) for k in MEMBER_FIELDS} for m in members],
            keep=kept["path"],
            reason=reason,
            min_score=round(float(min(edges)), 6) if edges else 1.0,
            max_score=round(float(max(edges)), 6) if edges else 1.0,
            threshold=threshold,
        )
        groups.append(group)
        return group

    unit_group: dict[int, int] = {}  # union-find root of a stronger component → its group id
    for cid, recs in sorted(by_content.items(), key=lambda kv: kv[1][0]["path"]):
        if len(recs) > 1:
            unit_group[cid] = add_group("exact", [cid], [1.0], "identical bytes").id

    uf = UnionFind()
    for cid in by_content:
        uf.find(cid)
    hashed = [
        (c, recs[0]["phash"]) for c, recs in by_content.items() if recs[0]["phash"] is not None
    ]
    if hashed:
        h_ids = np.array([c for c, _ in hashed], np.int64)
        h_vals = np.array([h for _, h in hashed], np.int64)
        a, b, d = hamming_pairs(h_ids, h_vals, options.hamming)
        edges = [
            (int(x), int(y), 1.0 - float(dist) / 64.0) for x, y, dist in zip(a, b, d, strict=True)
        ]
        unit_group = _tier(uf, edges, "near-identical", options.hamming, unit_group, add_group)

    for tier, threshold in (
        ("near-duplicate", options.near_duplicate),
        ("similar", options.similar),
    ):
        if threshold is None or len(ids) < 2:
            continue
        a, b, s = cosine_pairs(ids, vecs, threshold, k=options.k)
        edges = [(int(x), int(y), float(v)) for x, y, v in zip(a, b, s, strict=True)]
        unit_group = _tier(uf, edges, tier, threshold, unit_group, add_group)
    return groups


def _tier(
    uf: UnionFind,
    edges: list[tuple[int, int, float]],
    tier: str,
    threshold: Any,
    unit_group: dict[int, int],
    add_group: Any,
) -> dict[int, int]:
    """Merge stronger components along `edges`; report components that joined ≥ 2 units."""
    before = {c: uf.find(c) for c in uf.parent}
    edges = [e for e in edges if e[0] in before and e[1] in before]  # contents with a file
    for a, b, _ in edges:
        uf.union(a, b)
    comps: dict[int, list[int]] = defaultdict(list)
    for c in uf.parent:
        comps[uf.find(c)].append(c)
    edge_scores: dict[int, list[float]] = defaultdict(list)
    for a, b, score in edges:
        if before[a] != before[b]:
            edge_scores[uf.find(a)].append(score)
    result: dict[int, int] = {}
    for root, contents in comps.items():
        units = {before[c] for c in contents}
        if len(units) < 2:
            for c in contents:
                if c in unit_group:
                    result[c] = unit_group[c]
            continue
        contents.sort()
        group = add_group(tier, contents, edge_scores[root], threshold)
        group.contains = sorted({unit_group[c] for c in contents if c in unit_group})
        for c in contents:
            result[c] = group.id
    return result


def _score(tier: str, kept: dict, member: dict, vec_of: dict[int, np.ndarray]) -> float:
    """Similarity of a member to the kept file in this tier's measure."""
    if member["content_id"] == kept["content_id"]:
        return 1.0
    if tier == "near-identical" and member.get("phash") is not None:
        return round(1.0 - hamming(member["phash"], kept["phash"]) / 64.0, 6)
    a, b = vec_of.get(member["content_id"]), vec_of.get(kept["content_id"])
    return round(float(np.dot(a, b)), 6) if a is not None and b is not None else 0.0
