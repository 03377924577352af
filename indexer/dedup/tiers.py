"""Duplicate tiers from strongest to weakest: exact → near-identical → near-duplicate → similar.

A pair of pictures belongs to the strongest tier that links them. Each tier's groups are built
over the previous tier's groups ("units"), so a group never mixes tiers silently: a weaker group
is reported only when it joins at least two stronger units, and `contains` names the stronger
groups inside it (the tier just above; they name theirs). Groups do not chain: every unit's kept
file is within the tier's threshold of the group's kept file (stars.py).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field, fields
from functools import cmp_to_key
from typing import Any

import numpy as np

from indexer.dedup import candidates
from indexer.dedup.cells import f32
from indexer.dedup.copies import COPIES, EDITS, RELATIONS, Confirmer
from indexer.dedup.decisions import Decision, Rules
from indexer.dedup.evidence import Looks
from indexer.dedup.graph import Pairs
from indexer.dedup.keep import DEFAULT_KEEP, choose_keep, decide_keep, in_folders
from indexer.dedup.pairs import find_pairs, relation
from indexer.dedup.stars import Star, popcount64, split_stars
from indexer.devices import check_device
from indexer.errors import SettingsError
from indexer.imaging import hamming, hash_informative

TIERS = ("exact", "near-identical", "near-duplicate", "similar")
MEASURES = {
    "exact": "identical bytes (content hash); score 1",
    "near-identical": "pHash: score = 1 - differing bits / 64; threshold = most differing bits",
    "near-duplicate": "CLIP cosine; threshold = least cosine",
    "similar": "CLIP cosine; threshold = least cosine",
}
RANK_ABOVE = 32  # pieces of more units are ranked once instead of choosing at every round
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
    "pair",  # the other half of a RAW+JPEG pair (pairs.py), else None
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
        """SettingsError (a ValueError) for an option outside its range: a typo must not empty
        a report."""
        if not 0 <= self.hamming <= 32:
            raise SettingsError(f"--hamming {self.hamming}: use 0 to 32 bits (default 10)")
        if not 0 < self.near_duplicate <= 1:
            raise SettingsError(f"--near-duplicate {self.near_duplicate}: use a cosine in (0, 1]")
        if self.similar is not None and not 0 < self.similar < self.near_duplicate:
            raise SettingsError(
                f"--similar {self.similar}: use a cosine below --near-duplicate "
                f"({self.near_duplicate})"
            )
        if self.k < 1:
            raise SettingsError(f"k = {self.k}: at least one neighbour")
        problem = check_device(self.device)
        if problem:
            raise SettingsError(problem)
        for folder in self.prefer:
            if not os.path.isdir(folder):
                raise SettingsError(
                    f"--prefer {folder}: no such folder (name a folder of the index)"
                )

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
    keep_signal: str = ""  # the deciding signal's short name (docs/dedup.md)
    relation: str = COPIES  # or EDITS (copies.py), PAIR: only the halves of one RAW+JPEG shot
    resolved: bool = False  # a decision (indexer.dedup.decisions) shaped this group
    decision: str | None = None  # "keep" | "distinct"

    def as_dict(self) -> dict[str, Any]:
        """The group as JSON-ready data, like `dataclasses.asdict` but 10× faster on big reports
        (its deep copy dominated writing a big report): members are flat dicts of scalars."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["members"] = [dict(m) for m in self.members]
        out["contains"] = list(self.contains)
        if not self.resolved:  # optional keys: only on groups a decision touched
            del out["resolved"], out["decision"]
        return out


def find_groups(
    records: list[dict[str, Any]],
    ids: np.ndarray,
    vecs: np.ndarray,
    options: DedupOptions,
    stats: dict[str, Any] | None = None,
    decisions: list[Decision] | None = None,
    looks: Looks | None = None,
    pairs: dict[str, Pairs] | None = None,
) -> list[Group]:
    """Every tier's groups for catalog `records` (one per path) and content vectors.

    `stats`, when given, receives the pair counts and how each search was done; `decisions`
    (`index decide`) keep pictures apart and choose kept files; `looks` reads the grouped files
    (evidence.py) to tell copies from edits and originals from re-encodes (none: all edits).
    `pairs` (candidates.tier_pairs) are each tier's pairs when already found: `records` then
    need only cover the contents in them and the copies (dedup() reads no other record).
    """
    stats = {} if stats is None else stats
    by_content: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_content[int(rec["content_id"])].append(rec)
    if pairs is None:
        pairs = candidates.tier_pairs(candidates.of_records(records, ids, vecs), options, stats)
    row_of = {int(c): i for i, c in enumerate(ids)}
    hashes = {r["hash"]: int(r["content_id"]) for r in records} if decisions else {}
    builder = _Builder(by_content, vecs, row_of, options, Rules(decisions or (), hashes))
    builder.confirm = Confirmer(looks, by_content)
    builder.pairs = find_pairs(r["path"] for r in records)

    for cid, recs in sorted(by_content.items(), key=lambda kv: kv[1][0]["path"]):
        if len(recs) > 1:
            builder.exact(cid)
    stats["exact"] = {"contents": len(by_content), "files": len(records)}
    builder.tier("near-identical", pairs["near-identical"], options.hamming)
    for tier, threshold in (
        ("near-duplicate", options.near_duplicate),
        ("similar", options.similar),
    ):
        if threshold is not None:
            builder.tier(tier, pairs[tier], threshold)
    return builder.groups


class _Builder:
    """Stars over units, one tier at a time (stars.py): a unit is a stronger group, or a
    single content, named by its kept content; a weaker group is built over whole units."""

    def __init__(
        self,
        by_content: dict[int, list[dict[str, Any]]],
        vecs: np.ndarray,
        row_of: dict[int, int],
        options: DedupOptions,
        rules: Rules | None = None,
    ) -> None:
        self.by_content = by_content
        self.vecs = vecs
        self.row_of = row_of
        self.options = options
        self.groups: list[Group] = []
        self.unit_of: dict[int, int] = {}  # content → its unit's kept content (absent: itself)
        self.members_of: dict[int, list[int]] = {}  # unit → contents (units of ≥ 2 contents)
        self.group_of: dict[int, int] = {}  # content → id of the latest group holding it
        self.kept: dict[int, dict[str, Any]] = {}  # unit → its kept file's record
        self._order: dict[int, int] = {}  # unit → place by the keep rule, for large pieces
        self._rule = (options.keep, options.prefer)
        self._edits = False  # this pass joins edits, not copies (keep.decide_keep's `edits`)
        self.rules = rules or Rules()
        self.pairs: dict[str, str] = {}  # RAW+JPEG pairs: each half → the other (pairs.py)
        self.confirm = Confirmer(None, by_content)  # copies or edits (copies.py)

    def exact(self, cid: int) -> None:
        if cid in self.rules.copies:  # `index decide distinct` on copies: all of them wanted
            return
        group = self._add("exact", [cid], [], 1.0, [])
        self.group_of[cid] = group.id

    def tier(self, tier: str, pairs: Pairs, threshold: float | int) -> None:
        """The tier's `copies` groups, then its `edits` groups over them (copies.py)."""
        touched = {c for c in (*pairs.a.tolist(), *pairs.b.tolist()) if c in self.by_content}
        self.confirm.annotate(touched | {self._kept_cid(self.unit_of.get(c, c)) for c in touched})
        for kind in RELATIONS:
            self._tier(tier, pairs, threshold, kind)

    def _tier(self, tier: str, pairs: Pairs, threshold: float | int, kind: str) -> None:
        """Join units along `pairs` into stars around kept files; report each star as a group."""
        self._edits = kind == EDITS
        edges: dict[int, set[int]] = defaultdict(set)
        for x, y in zip(pairs.a.tolist(), pairs.b.tolist(), strict=True):
            if x in self.by_content and y in self.by_content:
                ux, uy = self.unit_of.get(x, x), self.unit_of.get(y, y)
                if ux != uy:
                    edges[ux].add(uy)
                    edges[uy].add(ux)

        def similar(center: int, units: list[int]) -> tuple[np.ndarray, np.ndarray]:
            scores, linked = self._similar(tier, threshold, center, units)
            kept = [self._kept_cid(u) for u in units]
            linked = self.confirm.linked(kind, self._kept_cid(center), kept, linked)
            return scores, self._apart(center, units, scores, linked)

        self._order = {}
        self.rules.blocked.clear()
        stars = split_stars(edges, self._center, similar)
        found = [
            (star, sorted(c for u in star.units for c in self.members_of.get(u, [u])))
            for star in stars
        ]
        found.sort(key=lambda item: min(r["path"] for c in item[1] for r in self.by_content[c]))
        for star, contents in found:
            contains = sorted({self.group_of[c] for c in contents if c in self.group_of})
            group = self._add(tier, contents, star.scores, threshold, contains, star)
            for u in star.units:
                self.members_of.pop(u, None)
            self.members_of[star.center] = contents
            for c in contents:
                self.unit_of[c] = star.center
                self.group_of[c] = group.id

    def _kept(self, unit: int) -> dict[str, Any]:
        return self.kept.get(unit) or self.by_content[unit][0]

    def _kept_cid(self, unit: int) -> int:
        return int(self._kept(unit)["content_id"])

    def _contents(self, unit: int) -> list[int]:
        return self.members_of.get(unit, [unit])

    def _apart(
        self, center: int, units: list[int], scores: np.ndarray, linked: np.ndarray
    ) -> np.ndarray:
        """`linked` less the units that would put two pictures of one `index decide distinct`
        decision in the star (strongest first: the weaker link gives way)."""
        if not self.rules.apart:
            return linked
        decided = self.rules.apart
        taken = {d for c in self._contents(center) for d in decided.get(c, ())}
        linked = linked.copy()
        for i in np.argsort(-np.asarray(scores), kind="stable").tolist():
            if not linked[i]:
                continue
            ids = {d for c in self._contents(units[i]) for d in decided.get(c, ())}
            if ids & taken:
                linked[i] = False
                self.rules.blocked.update(self._contents(units[i]))
                self.rules.blocked.update(self._contents(center))
            taken |= ids
        return linked

    def _center(self, piece: list[int]) -> int:
        """The unit whose kept file the keep rule keeps among the piece's kept files (a unit
        holding a picture you decided to keep first). A large piece is ranked once (pairwise);
        the pieces split from it are then read off the rank."""
        decided = [u for u in piece if any(c in self.rules.keep for c in self._contents(u))]
        if decided and len(decided) < len(piece):
            return self._center(decided)
        if len(piece) <= RANK_ABOVE:
            kept, _ = choose_keep([self._kept(u) for u in piece], *self._rule, self._edits)
            cid = int(kept["content_id"])
            return self.unit_of.get(cid, cid)
        if piece[0] not in self._order:  # pieces split from a ranked one are ranked with it

            def compare(a: int, b: int) -> int:
                ka, kb = self._kept(a), self._kept(b)
                return -1 if choose_keep([ka, kb], *self._rule, self._edits)[0] is ka else 1

            self._order.update((u, i) for i, u in enumerate(sorted(piece, key=cmp_to_key(compare))))
        return min(piece, key=self._order.__getitem__)

    def _similar(
        self, tier: str, threshold: float | int, center: int, units: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Similarity of each unit's kept content to `center` in the tier's measure, and
        whether it is within the threshold (pHash: bits; CLIP: cosine). Exact, per pair."""
        if tier == "near-identical":
            hc = self.by_content[center][0]["phash"]
            hashes = [self.by_content[u][0]["phash"] for u in units]
            usable = np.array([h is not None and hash_informative(h) for h in hashes], bool)
            if hc is None or not hash_informative(hc):
                usable[:] = False
            codes = np.array([h if ok else 0 for h, ok in zip(hashes, usable, strict=True)])
            bits = popcount64(np.bitwise_xor(codes.astype(np.int64), np.int64(hc or 0)))
            return 1.0 - bits / 64.0, usable & (bits <= threshold)
        rows = [self.row_of.get(u) for u in units]
        usable = np.array([r is not None for r in rows], bool)
        home = self.row_of.get(center)
        if home is None:
            return np.zeros(len(units)), np.zeros(len(units), bool)
        picked = f32(self.vecs[[r for r in rows if r is not None]]) @ f32(self.vecs[home])
        scores = np.zeros(len(units), np.float64)
        scores[usable] = picked
        return scores, usable & (scores >= threshold)

    def _add(
        self,
        tier: str,
        contents: list[int],
        links: list[float],
        threshold: float | int,
        contains: list[int],
        star: Star | None = None,
    ) -> Group:
        center = None if star is None else star.center
        self.confirm.annotate(contents if star else ())  # members of contained groups too
        records = {r["path"]: r for c in contents for r in self.by_content[c]}
        members = [dict(r) for r in records.values()]  # scored below; the records stay as read
        pool = [self._kept(u) for u in star.units] if star and self._edits else members
        choice = decide_keep(pool, *self._rule, self._edits)  # edits: units by their kept file
        kept, reason, signal = choice.member, choice.reason, choice.signal
        kept, reason, decision = self.rules.keeper(members, kept, reason, *self._rule)
        if center is not None and int(kept["content_id"]) != center:
            # a keep rule that is not a total order: the star's centre stays kept
            kept, reason = self._kept(center), "ranked first among the kept files it joined"
        signal = "decision" if decision == "keep" else signal
        self.kept[center if center is not None else contents[0]] = records[kept["path"]]
        for m in members:
            m["score"] = self._score(tier, kept, m)
            m["protected"] = in_folders(m["path"], self.options.prefer)
            m["protected"] = m["protected"] or self.rules.protects(m, kept)
            m["pair"] = self.pairs.get(m["path"])
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
            keep_signal=signal,
            relation=relation(members, EDITS if self._edits else COPIES),
            resolved=decision is not None,
            decision=decision,
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
                return round(float(np.dot(f32(self.vecs[a]), f32(self.vecs[b]))), 6)
        if member.get("phash") is not None and kept.get("phash") is not None:
            return round(1.0 - hamming(member["phash"], kept["phash"]) / 64.0, 6)
        return 0.0  # no common measure (a picture without a vector or a hash)
