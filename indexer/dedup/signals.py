"""The signals of the default keep rule: which member of a group is the original.

A photographer keeps the camera's file, not an export, a re-encode or a copy: camera metadata,
more pixels, the earliest date taken, names that do not look like copies, the earliest file time,
the camera's own format; the largest file only breaks what is left. docs/dedup.md lists them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from indexer.raw import is_raw

Member = dict[str, Any]
PIXEL_MARGIN = 0.01  # more pixels win only when more than 1 % more (a 1-px crop does not)
FILE_TIME_MARGIN_S = 60  # file times closer than this are one copy operation, not an order
QUALITY_MARGIN = 2  # JPEG qualities this close are one quality (tables are estimates)
# clipped shares within 1.5 points (or 50 %) are equal: re-encoding alone moves them ≤ 1.3 points
CLIP_MARGIN, CLIP_RATIO = 0.015, 0.5
# Words in a file or folder name (below the group's common folder) that mark a copy or an edit.
COPY_WORDS = frozenset(
    "copy copies kopie copie copia backup backups bak export exports exported edit edited edits "
    "small resized resize thumb thumbs thumbnail thumbnails duplicate duplicates preview".split()
)
MAX_NAME_PAIRS = 500  # members whose names are compared pairwise (a name extending another)
# "X (1)", "X(2)", macOS Finder's "X 2"; not a year: "Holiday (2019)", "Tour 2019"
_NUMBERED = re.compile(r"\(\d{1,2}\)|\s\d{1,2}$")


@dataclass(frozen=True)
class Criterion:
    """One step of a keep rule: which candidates stay, and how to say why the kept one won.

    `rank(member, group)` is smaller for better members; `survivors` keeps the best (within a
    margin for measured signals); `explain(kept, runner_up, group)` is the reason.
    """

    signal: str
    rank: Callable[[Member, GroupContext], Any]
    explain: Callable[[Member, Member, GroupContext], str]
    margin: Callable[[Any], Any] | None = None  # best rank → worst rank still counted as equal
    copies_only: bool = False  # silent between edits: it compares re-encodes, not edits

    def survivors(self, candidates: list[Member], group: GroupContext) -> list[Member]:
        if self.copies_only and group.edits:
            return candidates
        best = min(self.rank(m, group) for m in candidates)
        limit = self.margin(best) if self.margin else best
        return [m for m in candidates if self.rank(m, group) <= limit]


class GroupContext:
    """What the signals need to know about the whole group: relative paths, copy marks, and
    whether its members are edits of one picture rather than copies (copies.py)."""

    def __init__(self, members: Sequence[Member], edits: bool = False) -> None:
        self.edits = edits
        self.members = members
        dirs = [os.path.dirname(m["path"]) for m in members]
        try:
            self.root = os.path.commonpath(dirs) if dirs else ""
        except ValueError:  # mixed absolute and relative paths
            self.root = ""
        self.paths = [m["path"] for m in members]
        self._marks: dict[str, int] | None = None

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.root) if self.root else path

    def marks(self, path: str) -> int:
        """The copy marks of a member's path (computed for the group on first use)."""
        if self._marks is None:
            stems = {p: _stem(p) for p in self.paths}
            # a name extending another is checked pairwise: skipped in huge groups (O(n²))
            others = sorted(set(stems.values())) if len(stems) <= MAX_NAME_PAIRS else []
            self._marks = {p: _copy_marks(self.relative(p), stems[p], others) for p in self.paths}
        return self._marks[path]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _splits_a_word(a: str, b: str) -> bool:
    """True when a name boundary between characters a and b would cut a word or a number."""
    return (a.isdigit() and b.isdigit()) or (a.islower() and b.islower())


def _extends(stem: str, other: str) -> bool:
    """True when `stem` is `other` plus more (`LennaSaltAndPepper` ← `Lenna`, `X (1)` ← `X`)."""
    if len(other) < 3 or len(stem) <= len(other):
        return False
    low, needle = stem.lower(), other.lower()
    for found in re.finditer(re.escape(needle), low):
        i, j = found.start(), found.end()
        if i > 0 and _splits_a_word(stem[i - 1], stem[i]):
            continue
        if j < len(stem) and _splits_a_word(stem[j - 1], stem[j]):
            continue
        return True
    return False


def _copy_marks(relative: str, stem: str, stems: Sequence[str]) -> int:
    """How many signs of a copy a path carries: copy words, "(1)", a name extending another's."""
    folders = os.path.dirname(relative)
    words = re.split(r"[\W_]+", f"{folders} {stem}".lower())
    marks = sum(w in COPY_WORDS for w in words)
    marks += bool(_NUMBERED.search(stem))
    marks += any(_extends(stem, other) for other in stems if other.lower() != stem.lower())
    return marks


def _day(taken: str | None) -> str:
    return (taken or "")[:10]


def _camera_rank(m: Member, _: GroupContext) -> int:
    return -(2 * bool(m.get("camera")) + bool(m.get("taken_at")))


def _camera_explain(kept: Member, _: Member, __: GroupContext) -> str:
    parts = [p for p in (kept.get("camera"), _day(kept.get("taken_at"))) if p]
    return f"camera original ({', '.join(parts)})"


def pixels(m: Member) -> int:
    """Width × height as displayed (0 when unknown)."""
    return (m.get("width") or 0) * (m.get("height") or 0)


def dimensions(m: Member) -> str:
    """Width×height as displayed, for reasons."""
    return f"{m.get('width')}×{m.get('height')}"


def _taken_rank(m: Member, _: GroupContext) -> tuple[int, str]:
    taken = m.get("taken_at")
    return (0, taken) if taken else (1, "")


def _taken_explain(kept: Member, runner: Member, _: GroupContext) -> str:
    a, b = kept.get("taken_at") or "", runner.get("taken_at") or ""
    if not b:
        return f"taken earlier ({_day(a)}; the others have no date taken)"
    if _day(a) != _day(b):
        return f"taken earlier ({_day(a)} vs {_day(b)})"
    return f"taken earlier ({a.replace('T', ' ')} vs {b[11:]})"


def _file_time(ns: int | None) -> str:
    return datetime.fromtimestamp((ns or 0) / 1e9).isoformat(sep=" ", timespec="seconds")


def _fmt_name(m: Member) -> str:
    name = str(m.get("format") or "unknown")
    return "JPEG" if name == "MPO" else name


class Evidence(Criterion):
    """A signal read from the files themselves (evidence.py): silent (everyone survives) when
    a candidate has none, so it never claims what it did not observe."""

    def survivors(self, candidates: list[Member], group: GroupContext) -> list[Member]:
        if not all(m.get("evidence") for m in candidates):
            return candidates
        return super().survivors(candidates, group)


class _Encoding(Evidence):
    """Lossless vs lossy from the pixels, not the format's name (only with a lossy file in the
    group): a lossless file without JPEG's 8×8 block grid is where the lossy files came from;
    one with the grid was decoded from a JPEG, from one of the group's when one has the size and
    the quality the grid shows (that JPEG wins: it made the lossless file), else from a JPEG not
    here (it beats the lossy re-encodes). Lossless files only: nothing to say here."""

    def survivors(self, candidates: list[Member], group: GroupContext) -> list[Member]:
        if not all(m.get("evidence") and m.get("lossless") is not None for m in candidates):
            return candidates
        if all(m["lossless"] for m in candidates):
            return candidates
        return super().survivors(candidates, group)


def _made(jpeg: Member, decoded: Member) -> bool:
    """Whether `decoded` (lossless, with the grid) may be `jpeg` decoded: the same size, and
    the quality its grid shows (an estimate that reads 0–2 low) is the JPEG's."""
    source, quality = decoded.get("jpeg_source"), jpeg.get("jpeg_quality")
    same = (jpeg.get("width"), jpeg.get("height")) == (decoded.get("width"), decoded.get("height"))
    return same and source is not None and quality is not None and 0 <= quality - source <= 2


def _encoding_rank(m: Member, group: GroupContext) -> int:
    """0 lossless without the grid; 1 a JPEG that made a lossless member; 2 lossless decoded
    from a JPEG not here; 3 other lossy files; 4 lossless decoded from a JPEG here (or unsure)."""
    others = [o for o in group.members if o is not m]
    if not m.get("lossless"):
        grids = (o for o in others if o.get("lossless") and o.get("jpeg_grid"))
        return 1 if any(_made(m, o) for o in grids) else 3
    if not m.get("jpeg_grid"):
        return 0
    if m.get("jpeg_source") is None:
        return 4
    lossy = (o for o in others if o.get("lossless") is False)
    return 4 if any(_made(o, m) for o in lossy) else 2


def _encoding_explain(kept: Member, runner: Member, group: GroupContext) -> str:
    other, rank = group.relative(runner["path"]), _encoding_rank(kept, group)
    if rank == 0:
        return (
            f"lossless original ({_fmt_name(kept)} without a JPEG block grid: not decoded from "
            f'a JPEG; "{other}" is lossy)'
        )
    if rank == 2:
        return (
            f"lossless {_fmt_name(kept)} decoded from a quality ≈{kept.get('jpeg_source')} JPEG "
            f'that is not here; "{other}" is another re-encode'
        )
    made = [m for m in group.members if m.get("lossless") and _made(kept, m)]
    if made:
        export = group.relative(made[0]["path"])
        return (
            f'{_fmt_name(kept)} original ("{export}" is this JPEG decoded: same size, its 8×8 '
            f"block grid at quality ≈{kept.get('jpeg_quality')})"
        )
    grid = "carries JPEG's 8×8 block grid: decoded from a JPEG"
    return f'{_fmt_name(kept)} original ("{other}" {grid})'


def _unedited_rank(m: Member, _: GroupContext) -> float:
    return float(bool(m.get("grey"))) + float(m.get("clipped") or 0.0)


def _unedited_explain(kept: Member, runner: Member, _: GroupContext) -> str:
    if runner.get("grey") and not kept.get("grey"):
        return "in colour (the other is a greyscale version)"
    a, b = 100 * float(kept.get("clipped") or 0), 100 * float(runner.get("clipped") or 0)
    return f"fewer pixels clipped to black or white ({a:.1f} % vs {b:.1f} %; edits clip)"


class _Quality(Evidence):
    """Between JPEGs only: the higher quality read from the quantisation tables."""

    def survivors(self, candidates: list[Member], group: GroupContext) -> list[Member]:
        if not all(m.get("jpeg_quality") for m in candidates):
            return candidates
        return super().survivors(candidates, group)


DEFAULT_SIGNALS: dict[str, Criterion] = {
    "camera": Criterion("camera", _camera_rank, _camera_explain),
    "pixels": Criterion(
        "pixels",
        lambda m, _: -pixels(m),
        lambda k, r, _: f"more pixels ({dimensions(k)} vs {dimensions(r)})",
        margin=lambda best: best / (1 + PIXEL_MARGIN),  # ranks are negative pixel counts
    ),
    "taken": Criterion("taken", _taken_rank, _taken_explain),
    "copy-names": Criterion(
        "copy-names",
        lambda m, g: g.marks(m["path"]),
        lambda k, r, g: f'the others look like copies ("{g.relative(r["path"])}")',
    ),
    "file-time": Criterion(
        "file-time",
        lambda m, _: m.get("mtime_ns") or 0,
        lambda k, r, _: (
            f"modified earlier (file time {_file_time(k.get('mtime_ns'))} "
            f"vs {_file_time(r.get('mtime_ns'))})"
        ),
        margin=lambda best: best + FILE_TIME_MARGIN_S * 10**9,
    ),
    "encoding": _Encoding("encoding", _encoding_rank, _encoding_explain),
    "unedited": Evidence(
        "unedited",
        _unedited_rank,
        _unedited_explain,
        margin=lambda best: best + max(CLIP_MARGIN, CLIP_RATIO * (best % 1)),
    ),
    "quality": _Quality(
        "quality",
        lambda m, _: -int(m.get("jpeg_quality") or 0),
        lambda k, r, _: (
            f"higher JPEG quality (≈{k.get('jpeg_quality')} vs ≈{r.get('jpeg_quality')}, "
            "from the quantisation tables)"
        ),
        margin=lambda best: best + QUALITY_MARGIN,
        copies_only=True,
    ),
}


# Before any rule (keep.decide_keep): a RAW is the camera's original, never the copy to move.
RAW_FIRST = Criterion(
    "raw",
    lambda m, _: 0 if is_raw(m["path"]) else 1,
    lambda k, r, _: f"the camera's RAW file ({_fmt_name(k)}); a RAW is never the copy to move",
)
