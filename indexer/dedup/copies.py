"""The relation of a group: `copies` (the same pixels stored again), `edits` (the same picture
changed on purpose) or `pair` (the halves of one RAW+JPEG shot, pairs.py).

Each tier past `exact` is built twice over its links (tiers.py): first only links whose two
pictures are confirmed copies (confirm.py), giving `copies` groups; then every link but those
between distinct flat-ish pictures, over those groups, giving `edits` groups that contain them.
The quarantine's default moves only `copies`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from indexer.dedup.confirm import COPY, DISTINCT, compare
from indexer.dedup.evidence import Looks

COPIES, EDITS = "copies", "edits"
RELATIONS = (COPIES, EDITS)


class Confirmer:
    """Copy / edit / distinct verdicts between contents, from their files (`Looks`), cached
    per pair; without files (no `Looks`, or unreadable) a link is an edit, never a copy."""

    def __init__(self, looks: Looks | None, by_content: dict[int, list[dict[str, Any]]]) -> None:
        self.looks = looks
        self.by_content = by_content
        self._verdicts: dict[tuple[int, int], str | None] = {}

    def annotate(self, cids: Iterable[int]) -> None:
        """Read the evidence of these contents (their records get the keep rule's fields)."""
        if self.looks is not None:
            self.looks.annotate(self.by_content, cids)

    def verdict(self, a: int, b: int) -> str | None:
        """COPY, EDIT or DISTINCT between contents a and b; None when a file cannot be read."""
        key = (a, b) if a < b else (b, a)
        if key not in self._verdicts:
            self._verdicts[key] = self._compare(a, b)
        return self._verdicts[key]

    def _compare(self, a: int, b: int) -> str | None:
        if self.looks is None:
            return None
        (la, ta), (lb, tb) = self.looks.look(a), self.looks.look(b)
        if la is None or lb is None or ta is None or tb is None:
            return None
        ra, rb = self.by_content[a][0], self.by_content[b][0]
        shape_a = (ra.get("width") or ta.shape[1], ra.get("height") or ta.shape[0])
        shape_b = (rb.get("width") or tb.shape[1], rb.get("height") or tb.shape[0])
        return compare(ta, tb, shape_a, shape_b, max(la.flat, lb.flat)).relation

    def linked(self, kind: str, center: int, units: list[int], linked: np.ndarray) -> np.ndarray:
        """`linked` (by the tier's measure) less the links this pass does not take: `copies`
        takes confirmed copies only; `edits` takes all but distinct flat-ish pictures."""
        keep = linked.copy()
        for i, unit in enumerate(units):
            if keep[i]:
                found = self.verdict(center, unit)
                keep[i] = found == COPY if kind == COPIES else found != DISTINCT
        return keep
