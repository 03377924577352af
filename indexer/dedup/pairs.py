"""RAW+JPEG pairs: a camera's RAW file and the picture it wrote beside it are one shot.

Same folder, same name but for the suffix (case-insensitive): `IMG_0412.CR2` + `IMG_0412.JPG`
(or .HEIC...). Dedup marks both halves (`pair`), never proposes moving the RAW (signals.RAW_FIRST)
and the quarantine script leaves either half where it is unless run with --include-pairs.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from indexer.raw import is_raw

PAIR = "pair"  # Group.relation of a group that is only the halves of one shot


def shot(path: str) -> tuple[str, str]:
    """The shot a file belongs to: its folder and its name without suffix, case-folded."""
    folder, name = os.path.split(path)
    return folder, os.path.splitext(name)[0].casefold()


def find_pairs(paths: Iterable[str]) -> dict[str, str]:
    """Each half of a RAW+JPEG pair → the other half's path (a RAW with two twins, e.g. a JPEG
    and a HEIC, names the first by path; each twin names the RAW)."""
    shots: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in paths:
        shots[shot(path)].append(path)
    out: dict[str, str] = {}
    for members in shots.values():
        if len(members) < 2:
            continue
        raws = sorted(p for p in members if is_raw(p))
        twins = sorted(p for p in members if not is_raw(p))
        if raws and twins:
            out.update((r, twins[0]) for r in raws)
            out.update((t, raws[0]) for t in twins)
    return out


def relation(members: Sequence[dict[str, Any]], other: str) -> str:
    """PAIR when the group is nothing but the halves of one shot, else `other` (copies.py)."""
    if all(m.get("pair") for m in members) and len({shot(m["path"]) for m in members}) == 1:
        return PAIR
    return other
