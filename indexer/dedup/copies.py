"""The relation of a group: `copies` (the same pixels stored again), `edits` (the same picture
changed on purpose) or `pair` (the halves of one RAW+JPEG shot, pairs.py).

Each tier past `exact` is built twice over its links (tiers.py): first only links whose two
pictures are confirmed copies (confirm.py), giving `copies` groups; then every link but those
between distinct flat-ish pictures, over those groups, giving `edits` groups that contain them.
The quarantine's default moves only `copies`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np

from indexer.dedup.confirm import COPY, DISTINCT, Pixels, compare
from indexer.dedup.evidence import Look, Looks

COPIES, EDITS = "copies", "edits"
PIXELS = 64  # contents whose resampled thumbs are kept (a star compares one centre with many)
RELATIONS = (COPIES, EDITS)


class Confirmer:
    """Copy / edit / distinct verdicts between contents, from their files (`Looks`), cached
    per pair; without files (no `Looks`, or unreadable) a link is an edit, never a copy."""

    def __init__(self, looks: Looks | None, by_content: dict[int, list[dict[str, Any]]]) -> None:
        self.looks = looks
        self.by_content = by_content
        self._verdicts: dict[tuple[int, int], str | None] = {}
        self._recent: OrderedDict[int, Pixels] = OrderedDict()

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
        (la, pa), (lb, pb) = self._pixels(a), self._pixels(b)
        if la is None or lb is None or pa is None or pb is None:
            return None
        return compare(
            pa, pb, self._shape(a, pa), self._shape(b, pb), max(la.flat, lb.flat)
        ).relation

    def _pixels(self, cid: int) -> tuple[Look | None, Pixels | None]:
        """A content's evidence and its `Pixels` (kept for the last PIXELS contents)."""
        assert self.looks is not None
        if cid in self._recent:
            self._recent.move_to_end(cid)
            return self.looks.known.get(cid), self._recent[cid]
        look, thumb = self.looks.look(cid)
        if thumb is None:
            return look, None
        self._recent[cid] = Pixels(thumb)
        while len(self._recent) > PIXELS:
            self._recent.popitem(last=False)
        return look, self._recent[cid]

    def _shape(self, cid: int, pixels: Pixels) -> tuple[int, int]:
        rec = self.by_content[cid][0]
        return rec.get("width") or pixels.size[0], rec.get("height") or pixels.size[1]

    def linked(self, kind: str, center: int, units: list[int], linked: np.ndarray) -> np.ndarray:
        """`linked` (by the tier's measure) less the links this pass does not take: `copies`
        takes confirmed copies only; `edits` takes all but distinct flat-ish pictures."""
        keep = linked.copy()
        for i, unit in enumerate(units):
            if keep[i]:
                found = self.verdict(center, unit)
                keep[i] = found == COPY if kind == COPIES else found != DISTINCT
        return keep
