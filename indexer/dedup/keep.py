"""Which copy to keep: an ordered, configurable rule plus preferred folders.

`--keep resolution,format:heic>png>jpg,size,exif,oldest` compares members criterion by
criterion; the first criterion that separates the winner from the runner-up is the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_KEEP = "resolution,format:heic>png>jpg>webp,size,exif,oldest"
Member = dict[str, Any]
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff", "heif": "heic"}


class KeepRuleError(ValueError):
    """A --keep rule that cannot be parsed."""


def _fmt(name: str | None) -> str:
    name = (name or "").lower()
    return _FORMAT_ALIASES.get(name, name)


def _criterion(token: str) -> tuple[str, Callable[[Member], Any], Callable[[Member], str]]:
    """(name, sort key — smaller is better, description of a member's value)."""
    token = token.strip()
    if token == "resolution":
        return (
            "largest resolution",
            lambda m: -((m.get("width") or 0) * (m.get("height") or 0)),
            lambda m: f"{m.get('width')}x{m.get('height')}",
        )
    if token.startswith("format:"):
        order = [_fmt(f) for f in token[7:].split(">") if f.strip()]
        return (
            "preferred format",
            lambda m: (
                order.index(_fmt(m.get("format"))) if _fmt(m.get("format")) in order else len(order)
            ),
            lambda m: str(m.get("format")),
        )
    if token == "size":
        return ("largest file", lambda m: -(m.get("size") or 0), lambda m: f"{m.get('size')} bytes")
    if token == "exif":
        return ("has EXIF date", lambda m: 0 if m.get("taken_at") else 1, lambda m: "EXIF date")
    if token in ("oldest", "newest"):
        sign = 1 if token == "oldest" else -1

        def when(m: Member) -> float:
            taken = m.get("taken_at")
            if taken:
                from datetime import datetime

                return sign * datetime.fromisoformat(taken).timestamp()
            return sign * (m.get("mtime_ns") or 0) / 1e9

        return (token, when, lambda m: m.get("taken_at") or "file time")
    if token == "shortest-path":
        return ("shortest path", lambda m: len(m["path"]), lambda m: m["path"])
    raise KeepRuleError(
        f"unknown --keep criterion {token!r}: use resolution, format:A>B>C, size, exif, "
        "oldest, newest, shortest-path"
    )


def parse_rule(rule: str) -> list[tuple[str, Callable[[Member], Any], Callable[[Member], str]]]:
    return [_criterion(t) for t in rule.split(",") if t.strip()]


def choose_keep(
    members: Sequence[Member], rule: str = DEFAULT_KEEP, prefer: Sequence[str] = ()
) -> tuple[Member, str]:
    """The member to keep and a human reason (first criterion that decided)."""
    criteria = parse_rule(rule)
    roots = [os.path.abspath(p).rstrip(os.sep) + os.sep for p in prefer]

    def preferred(m: Member) -> int:
        for rank, root in enumerate(roots):
            if m["path"].startswith(root):
                return rank
        return len(roots)

    def key(m: Member) -> tuple:
        return (preferred(m), *(c[1](m) for c in criteria), m["path"])

    ranked = sorted(members, key=key)
    best, runner = ranked[0], ranked[1] if len(ranked) > 1 else None
    if runner is None:
        return best, "only member"
    if preferred(best) != preferred(runner):
        return best, f"in preferred folder {roots[preferred(best)].rstrip(os.sep)}"
    for name, sort_key, describe in criteria:
        if sort_key(best) != sort_key(runner):
            return best, f"{name} ({describe(best)})"
    return best, "all criteria tie: first by path"
