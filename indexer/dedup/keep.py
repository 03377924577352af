"""Which copy to keep: an ordered, configurable rule plus preferred (protected) folders.

`--keep resolution,format:heic>png>jpg,size,exif,oldest` compares members criterion by
criterion; the first criterion that separates the winner from the runner-up is the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

DEFAULT_KEEP = "resolution,format:heic>png>jpg>webp,size,exif,oldest"
CRITERIA = "resolution, format:A>B>C, size, exif, oldest, newest, shortest-path"
Member = dict[str, Any]
Criterion = tuple[str, Callable[[Member], Any], Callable[[Member], str]]
# Pillow's format names → the names people type (MPO: JPEG with extra frames, as phones write)
_FORMAT_ALIASES = {"jpg": "jpeg", "jpe": "jpeg", "mpo": "jpeg", "tif": "tiff", "heif": "heic"}


class KeepRuleError(ValueError):
    """A --keep rule that cannot be parsed."""


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


def _criterion(token: str) -> Criterion:
    """(name, sort key — smaller is better, description of a member's value)."""
    token = token.strip()
    if token == "resolution":
        return (
            "largest resolution",
            lambda m: -((m.get("width") or 0) * (m.get("height") or 0)),
            lambda m: f"{m.get('width')}x{m.get('height')}",
        )
    if token.startswith("format:"):
        order = [_fmt(f.strip()) for f in token[7:].split(">") if f.strip()]
        if not order:
            raise KeepRuleError(f"--keep {token!r}: name formats, e.g. format:heic>png>jpg")

        def rank(m: Member) -> int:
            name = _fmt(m.get("format"))
            return order.index(name) if name in order else len(order)

        return ("preferred format", rank, lambda m: str(m.get("format")))
    if token == "size":
        return ("largest file", lambda m: -(m.get("size") or 0), lambda m: f"{m.get('size')} bytes")
    if token == "exif":
        return (
            "has an EXIF date",
            lambda m: 0 if m.get("taken_at") else 1,
            lambda m: f"taken {m.get('taken_at')}",
        )
    if token in ("oldest", "newest"):
        sign = 1 if token == "oldest" else -1
        return (token, lambda m: sign * _when(m)[0], lambda m: _when(m)[1])
    if token == "shortest-path":
        return ("shortest path", lambda m: len(m["path"]), lambda m: f"{len(m['path'])} characters")
    raise KeepRuleError(f"unknown --keep criterion {token!r}: use {CRITERIA}")


def parse_rule(rule: str) -> list[Criterion]:
    """The criteria of a --keep rule, in order; KeepRuleError names a bad one."""
    criteria = [_criterion(t) for t in rule.split(",") if t.strip()]
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


def choose_keep(
    members: Sequence[Member], rule: str = DEFAULT_KEEP, prefer: Sequence[str] = ()
) -> tuple[Member, str]:
    """The member to keep and a human reason (the first criterion that decided).

    Preferred folders come first, in the order given; ties after every criterion go to
    the alphabetically first path, so the choice is repeatable.
    """
    criteria = parse_rule(rule)
    roots = _roots(prefer)

    def preferred(m: Member) -> int:
        rank = folder_rank(m["path"], prefer) if prefer else None
        return len(roots) if rank is None else rank

    def key(m: Member) -> tuple:
        return (preferred(m), *(c[1](m) for c in criteria), m["path"])

    ranked = sorted(members, key=key)
    best = ranked[0]
    if len(ranked) == 1:
        return best, "only member"
    runner = ranked[1]
    if preferred(best) != preferred(runner):
        return best, f"in preferred folder {roots[preferred(best)].rstrip(os.sep)}"
    for name, sort_key, describe in criteria:
        if sort_key(best) != sort_key(runner):
            return best, f"{name} ({describe(best)})"
    return best, "all criteria tie: first path in order"
