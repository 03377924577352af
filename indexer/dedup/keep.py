"""Which copy to keep: an ordered rule of signals plus preferred (protected) folders.

The default rule keeps the original a photographer would keep (signals.py); `--keep
resolution,format:heic>png>jpg,size,...` sets another order. Criteria narrow the candidates
one after the other; the one that set the kept file apart from the runner-up is the reason.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from indexer.dedup.signals import (
    DEFAULT_SIGNALS,
    RAW_FIRST,
    Criterion,
    GroupContext,
    Member,
    pixels,
)
from indexer.errors import UserError

DEFAULT_KEEP = "camera,pixels,taken,encoding,unedited,copy-names,file-time,quality,size"
# names of earlier versions: `original-format` (by format name) now reads the files instead
_RENAMED = {"original-format": "encoding"}
CRITERIA = (
    "camera, pixels, taken, encoding, unedited, copy-names, file-time, quality, resolution, "
    "format:A>B>C, size, exif, oldest, newest, shortest-path"
)
# Pillow's format names → the names people type (MPO: JPEG with extra frames, as phones write)
_FORMAT_ALIASES = {"jpg": "jpeg", "jpe": "jpeg", "mpo": "jpeg", "tif": "tiff", "heif": "heic"}


class KeepRuleError(UserError, ValueError):
    """A --keep rule that cannot be parsed."""


@dataclass(frozen=True)
class Choice:
    """The kept member, the reason in words and the deciding signal's short name."""

    member: Member
    reason: str
    signal: str


def _fmt(name: str | None) -> str:
    name = (name or "").lower()
    return _FORMAT_ALIASES.get(name, name)


def _when(m: Member) -> tuple[float, str]:
    """(seconds, description): the EXIF date taken, else the file's modification time."""
    taken = m.get("taken_at")
    if taken:
        try:
            return datetime.fromisoformat(taken).timestamp(), f"taken {taken}"
        except ValueError:
            pass
    seconds = (m.get("mtime_ns") or 0) / 1e9
    stamp = datetime.fromtimestamp(seconds).isoformat(timespec="seconds")
    return seconds, f"file time {stamp}"


def _simple(signal: str, name: str, rank, describe, copies_only: bool = False) -> Criterion:
    """A criterion whose reason is `name (value of the kept member)`."""
    return Criterion(
        signal,
        lambda m, _: rank(m),
        lambda k, r, _: f"{name} ({describe(k)})",
        copies_only=copies_only,
    )


def _format_order(token: str) -> Criterion:
    order = [_fmt(f.strip()) for f in token[7:].split(">") if f.strip()]
    if not order:
        raise KeepRuleError(f"--keep {token!r}: name formats, e.g. format:heic>png>jpg")

    def rank(m: Member) -> int:
        name = _fmt(m.get("format"))
        return order.index(name) if name in order else len(order)

    return _simple("format", "preferred format", rank, lambda m: str(m.get("format")))


def _criterion(token: str) -> Criterion:
    """The criterion a --keep token names; KeepRuleError for an unknown one."""
    token = _RENAMED.get(token.strip(), token.strip())
    if token in DEFAULT_SIGNALS:
        return DEFAULT_SIGNALS[token]
    if token == "resolution":
        return _simple(
            "resolution",
            "largest resolution",
            lambda m: -pixels(m),
            lambda m: f"{m.get('width')}x{m.get('height')}",
        )
    if token.startswith("format:"):
        return _format_order(token)
    if token == "size":
        return _simple(
            "size",
            "largest file",
            lambda m: -(m.get("size") or 0),
            lambda m: f"{m.get('size')} bytes",
            copies_only=True,  # an edit's file size says nothing about which came first
        )
    if token == "exif":
        return _simple(
            "exif",
            "has an EXIF date",
            lambda m: 0 if m.get("taken_at") else 1,
            lambda m: f"taken {m.get('taken_at')}",
        )
    if token in ("oldest", "newest"):
        sign = 1 if token == "oldest" else -1
        return _simple(token, token, lambda m: sign * _when(m)[0], lambda m: _when(m)[1])
    if token == "shortest-path":
        return _simple(
            "shortest-path",
            "shortest path",
            lambda m: len(m["path"]),
            lambda m: f"{len(m['path'])} characters",
        )
    raise KeepRuleError(f"unknown --keep criterion {token!r}: use {CRITERIA}")


def parse_rule(rule: str) -> list[Criterion]:
    """The criteria of a --keep rule, in order; KeepRuleError names a bad one."""
    return list(_parsed(rule))


@functools.lru_cache(maxsize=16)
def _parsed(rule: str) -> tuple[Criterion, ...]:
    """Parsed once per rule (every group asks; the criteria hold no state)."""
    criteria = tuple(_criterion(t) for t in rule.split(",") if t.strip())
    if not criteria:
        raise KeepRuleError(f"--keep {rule!r}: name at least one criterion ({CRITERIA})")
    return criteria


def _roots(folders: Sequence[str]) -> list[str]:
    return [os.path.abspath(os.path.expanduser(str(p))).rstrip(os.sep) + os.sep for p in folders]


def folder_rank(path: str, folders: Sequence[str]) -> int | None:
    """Index of the first of `folders` that holds `path`, or None."""
    roots = _roots(folders)
    for rank, root in enumerate(roots):
        if path.startswith(root):
            return rank
    real = os.path.realpath(path)  # the same folder reached through a symbolic link
    for rank, root in enumerate(roots):
        if real.startswith(os.path.realpath(root).rstrip(os.sep) + os.sep):
            return rank
    return None


def in_folders(path: str, folders: Sequence[str]) -> bool:
    """True when `path` lies in one of `folders` (a preferred folder is also protected)."""
    return bool(folders) and folder_rank(path, folders) is not None


def _preferred(prefer: Sequence[str]) -> Criterion:
    roots = _roots(prefer)

    def rank(m: Member) -> int:
        found = folder_rank(m["path"], prefer) if prefer else None
        return len(roots) if found is None else found

    def explain(kept: Member, _: Member, __: GroupContext) -> str:
        return f"in preferred folder {roots[rank(kept)].rstrip(os.sep)}"

    return Criterion("preferred-folder", lambda m, _: rank(m), explain)


def _no_signal(kept: Member, runner: Member, rule: str, edits: bool) -> str:
    if rule != DEFAULT_KEEP:
        return "all criteria tie: first path in order"
    if edits:
        return "no signal tells which is the original (edits of one picture); kept the first path"
    same = kept.get("content_id") is not None and kept.get("content_id") == runner.get("content_id")
    what = "same pixels and metadata" if same else "same resolution, format, size and metadata"
    return f"no signal tells them apart ({what}); kept the first path"


def decide_keep(
    members: Sequence[Member],
    rule: str = DEFAULT_KEEP,
    prefer: Sequence[str] = (),
    edits: bool = False,
) -> Choice:
    """The member to keep, why, and the deciding signal.

    A RAW file comes first (signals.RAW_FIRST), then preferred folders, in the order given,
    then the rule's criteria; each keeps the best candidates (measured signals within their
    margin). Ties left go to the first path. `edits`: the members are edits of one picture,
    not copies (with the default rule, the signals that compare re-encodes, JPEG quality and
    file size, stay silent).
    """
    criteria = [RAW_FIRST, _preferred(prefer), *parse_rule(rule)]
    candidates = sorted(members, key=lambda m: m["path"])
    if len(candidates) == 1:
        return Choice(candidates[0], "only member", "only")
    group = GroupContext(candidates, edits and rule == DEFAULT_KEEP)  # a rule of yours: as said
    for criterion in criteria:
        survivors = criterion.survivors(candidates, group)
        if len(survivors) == 1:
            out = [m for m in candidates if m is not survivors[0]]
            runner = min(out, key=lambda m: criterion.rank(m, group))  # stable: by path
            return Choice(
                survivors[0], criterion.explain(survivors[0], runner, group), criterion.signal
            )
        candidates = survivors
    return Choice(candidates[0], _no_signal(candidates[0], candidates[1], rule, edits), "path")


def choose_keep(
    members: Sequence[Member],
    rule: str = DEFAULT_KEEP,
    prefer: Sequence[str] = (),
    edits: bool = False,
) -> tuple[Member, str]:
    """The member to keep and a human reason (the criterion that decided); see decide_keep."""
    choice = decide_keep(members, rule, prefer, edits)
    return choice.member, choice.reason
