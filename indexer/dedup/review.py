"""Reviewing a big report: per-tier summary with the space a quarantine would reclaim, filters
by tier and folder, pages, and thresholds in words. Shared by the Duplicates page and the HTML
report, so both say the same thing about the same groups.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from indexer.dedup.quarantine import QUARANTINE_TIERS, movable
from indexer.dedup.tiers import TIERS, Group

GroupLike = Group | dict[str, Any]


@dataclass
class TierSummary:
    """One tier of a report: groups, files in them, and the bytes of the non-kept files."""

    tier: str
    groups: int = 0
    files: int = 0
    duplicates: int = 0  # the copies a quarantine moves from this tier (each file once)
    reclaim: int = 0  # their bytes
    edits: int = 0  # edits in its `edits` groups (not kept, not moved as copies): kept apart


def _get(group: GroupLike, key: str) -> Any:
    return group[key] if isinstance(group, dict) else getattr(group, key)


def summarize(groups: Iterable[GroupLike]) -> dict[str, TierSummary]:
    """Per tier (strongest first): groups, files, the copies a quarantine moves and their bytes,
    and the edits kept apart. The moves are the script's own plan (quarantine.movable), each
    file counted once, in its widest group: the exact and near-identical lines add up to what
    the default script moves; a weaker tier's line is what naming it in --tiers adds.
    """
    out = {t: TierSummary(t) for t in TIERS}
    groups = list(groups)
    by_id = {_get(g, "id"): g for g in groups}
    plain, edits = [], {t: set() for t in TIERS}
    for g in groups:
        line, keep = out[_get(g, "tier")], _get(g, "keep")
        members = _get(g, "members")
        line.groups += 1
        line.files += len(members)
        edits[line.tier].update(edits_in(g, by_id))
        plain.append(
            {"tier": line.tier, "relation": _get(g, "relation"), "keep": keep,
             "members": [(m["path"], m) for m in members]}
        )  # fmt: skip
    moved = movable(plain, QUARANTINE_TIERS)
    first = {member[0] for member, _ in moved}
    more = [(m, g) for m, g in movable(plain, TIERS) if m[0] not in first]
    for (_, m), g in [*moved, *more]:
        if m.get("pair") or m.get("protected"):  # the script leaves these where they are
            continue
        line = out[g["tier"]]
        line.duplicates += 1
        line.reclaim += int(m.get("size") or 0)
    for tier, paths in edits.items():
        out[tier].edits = len(paths - first)
    return out


def edits_in(group: GroupLike, by_id: dict[int, GroupLike]) -> set[str]:
    """The paths of an `edits` group that are edits: every member but the kept file and the
    copies of it (the members of the contained group that holds it). Empty for other groups."""
    if _get(group, "relation") != "edits":
        return set()
    keep = _get(group, "keep")
    inner = (by_id[i] for i in _get(group, "contains") if i in by_id)
    copies = {m["path"] for g in inner if keep in {m["path"] for m in _get(g, "members")}
              for m in _get(g, "members")}  # fmt: skip
    return {m["path"] for m in _get(group, "members")} - copies - {keep}


def in_folder(path: str, folder: str) -> bool:
    """Whether `path` lies in `folder` or below it (a path prefix on whole components)."""
    folder = folder.rstrip(os.sep) or os.sep
    return path.startswith(folder if folder == os.sep else folder + os.sep)


def select(
    groups: Sequence[GroupLike], tier: str | None = None, folder: str | None = None
) -> list[GroupLike]:
    """The groups of `tier` (None: all) with at least one member in `folder` (None: anywhere)."""
    return [
        g
        for g in groups
        if (tier is None or _get(g, "tier") == tier)
        and (folder is None or any(in_folder(m["path"], folder) for m in _get(g, "members")))
    ]


def page_count(total: int, size: int) -> int:
    """Pages of `size` items needed for `total` (at least one, so a page 1 always exists)."""
    return max(1, -(-total // max(1, size)))


def page(items: Sequence[Any], number: int, size: int) -> Sequence[Any]:
    """Page `number` (1-based, clamped to the last page) of `items`."""
    number = min(max(1, number), page_count(len(items), size))
    return items[(number - 1) * size : number * size]


def describe_threshold(tier: str, threshold: float | int | None) -> str:
    """A tier's threshold in words, e.g. "pHash ≤ 10 bits apart" or "CLIP cosine ≥ 0.95"."""
    if tier == "exact":
        return "identical bytes"
    if threshold is None:
        return "off"
    if tier == "near-identical":
        return f"pHash ≤ {threshold} bits apart (score ≥ {1 - float(threshold or 0) / 64:.3f})"
    return f"CLIP cosine ≥ {threshold}"


def threshold_words(thresholds: dict[str, Any]) -> dict[str, str]:
    """Each tier's link in words from a report's `thresholds`: {"similar": "off", ...}."""
    keys = {"exact": "exact", "near-identical": "hamming", "near-duplicate": "near_duplicate"}
    return {t: describe_threshold(t, thresholds.get(keys.get(t, t))) for t in TIERS}
