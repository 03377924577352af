"""Decisions that persist: "keep this one" and "these are not duplicates", by content hash.

They live in the catalog's `decisions` table, keyed by the pictures' content hashes, so they
survive moves, renames and re-embedding. Each write is one short SQLite transaction on a table
no build touches (no writer lock): a decision can be made while `index build` runs.
`indexer.dedup.dedup` loads them (`load`) and honours them (`Rules`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text

from indexer.dedup.keep import Member, choose_keep
from indexer.errors import UserError
from indexer.hints import no_index
from indexer.store.catalog import CATALOG_FILE, Catalog, CatalogError, Content, File, chunked

if TYPE_CHECKING:
    from indexer.dedup.graph import UnionFind

KINDS = ("keep", "distinct")


class DecisionError(UserError, ValueError):
    """A decision that cannot be made: a path not in the index, too few pictures."""


@dataclass(frozen=True)
class Decision:
    """One stored decision: its kind, the content hashes it names, the paths it was made on."""

    id: int
    kind: str
    hashes: tuple[str, ...]
    paths: tuple[str, ...]  # absolute, as indexed when the decision was made
    created_at: float
    note: str | None = None

    @property
    def day(self) -> str:
        """The local date it was made, e.g. 2026-12-01."""
        return datetime.fromtimestamp(self.created_at).date().isoformat()

    def as_dict(self, now: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """JSON-ready; `now` maps a hash to its paths in the index today (none: gone)."""
        now = now or {}
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at": datetime.fromtimestamp(self.created_at).astimezone().isoformat(),
            "pictures": [{"hash": h, "paths": now.get(h, [])} for h in self.hashes],
            "decided_paths": list(self.paths),
            "note": self.note,
        }


@contextmanager
def _open(index: Path, *, write: bool) -> Iterator[Catalog]:
    """The index's catalog (never created here: a missing index is an error)."""
    if not (Path(index) / CATALOG_FILE).exists():
        raise CatalogError(no_index(index))
    cat = Catalog(index, readonly=not write)
    try:
        yield cat
    finally:
        cat.close()


def _hashes_of(cat: Catalog, paths: Iterable[str]) -> dict[str, str]:
    """Indexed path → content hash for the given paths that are in the index."""
    wanted = sorted(set(paths))
    out: dict[str, str] = {}
    with cat.session() as s:
        for chunk in chunked(wanted):
            query = select(File.path, Content.hash).join(Content, Content.id == File.content_id)
            out.update((p, h) for p, h in s.execute(query.where(File.path.in_(chunk))))
    return out


def _resolve(cat: Catalog, paths: Sequence[str | os.PathLike[str]]) -> list[tuple[str, str]]:
    """(indexed path, content hash) for each path as given (absolute or through a link);
    DecisionError names every path that is not in the index."""
    tries = {}
    for p in paths:
        given = os.path.abspath(os.path.expanduser(os.fspath(p)))
        tries[os.fspath(p)] = (given, os.path.realpath(given))
    known = _hashes_of(cat, (t for pair in tries.values() for t in pair))
    found, missing = [], []
    for p, pair in tries.items():
        hit = next((t for t in pair if t in known), None)
        if hit is None:
            missing.append(p)
        else:
            found.append((hit, known[hit]))
    if missing:
        raise DecisionError(
            f"not in the index at {cat.index_dir}: {', '.join(missing)} "
            "(build it first, or give the path of an indexed picture)"
        )
    return found


def _check_seen(cat: Catalog, seen: Mapping[str, int] | None) -> None:
    """DecisionError unless each path still holds the content id the user saw (a page drawn
    before a rebuild or a move must not decide for another picture)."""
    if not seen:
        return
    now: dict[str, int] = {}
    with cat.session() as s:
        for chunk in chunked(sorted(seen)):
            query = select(File.path, File.content_id).where(File.path.in_(chunk))
            now.update((p, int(c)) for p, c in s.execute(query))
    changed = [p for p, cid in seen.items() if now.get(p) != int(cid)]
    if changed:
        raise DecisionError(
            f"changed since the page was drawn: {', '.join(changed)}; nothing was saved "
            "(look again and decide on what is shown now)"
        )


def _store(cat: Catalog, kind: str, hashes: list[str], paths: list[str], note: str | None) -> int:
    """Insert a decision, replacing the same one made before; returns its id."""
    key = json.dumps(sorted(set(hashes)))
    with cat.session() as s:
        same = {"k": kind, "h": key}
        s.execute(text("DELETE FROM decisions WHERE kind = :k AND hashes = :h"), same)
        row = s.execute(
            text(
                "INSERT INTO decisions (kind, hashes, paths, created_at, note) "
                "VALUES (:k, :h, :p, :t, :n)"
            ),
            {"k": kind, "h": key, "p": json.dumps(paths), "t": _now(), "n": note},
        )
        return int(row.lastrowid)


def _now() -> float:
    return datetime.now().timestamp()


def keep(
    settings: Any,
    path: str | os.PathLike[str],
    note: str | None = None,
    seen: Mapping[str, int] | None = None,
) -> Decision:
    """Decide that the picture at `path` is the kept file of whatever group it is in; `seen`
    (path → content id shown to the user) refuses the decision if a path changed since."""
    with _open(settings.index, write=True) as cat:
        _check_seen(cat, seen)
        ((indexed, digest),) = _resolve(cat, [path])
        new = _store(cat, "keep", [digest], [indexed], note)
        return next(d for d in load(cat) if d.id == new)


def distinct(
    settings: Any,
    paths: Sequence[str | os.PathLike[str]],
    note: str | None = None,
    seen: Mapping[str, int] | None = None,
) -> Decision:
    """Decide that the pictures at `paths` are not duplicates of each other (`seen`: as keep).

    Byte-identical copies are one picture: naming only copies of one picture means "keep all
    these copies" (its exact group is no longer reported).
    """
    with _open(settings.index, write=True) as cat:
        _check_seen(cat, seen)
        found = dict(_resolve(cat, paths))
        if len(found) < 2:
            raise DecisionError(
                "name at least two different indexed files: `index decide distinct PATH PATH...`"
            )
        new = _store(cat, "distinct", list(found.values()), sorted(found), note)
        return next(d for d in load(cat) if d.id == new)


def list_(settings: Any) -> list[dict[str, Any]]:
    """Every decision, oldest first, with the paths its pictures have in the index now."""
    with _open(settings.index, write=False) as cat:
        decisions = load(cat)
        now = _paths_now(cat, {h for d in decisions for h in d.hashes})
    return [d.as_dict(now) for d in decisions]


def forget(settings: Any, paths: Sequence[str | os.PathLike[str]]) -> list[Decision]:
    """Drop every decision that names one of these pictures; returns what was dropped.

    A path no longer in the index still matches the decisions that were made on it.
    """
    with _open(settings.index, write=True) as cat:
        given = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
        indexed = _hashes_of(cat, given)
        decisions = load(cat)
        recorded = {p for d in decisions for p in d.paths}
        unknown = [p for p in given if p not in indexed and p not in recorded]
        if unknown:
            raise DecisionError(
                f"neither in the index nor in a decision: {', '.join(unknown)}"
                " (`index decide list` shows the decisions)"
            )
        hashes, named = set(indexed.values()), set(given)
        gone = [d for d in decisions if hashes & set(d.hashes) or named & set(d.paths)]
        with cat.session() as s:
            for d in gone:
                s.execute(text("DELETE FROM decisions WHERE id = :i"), {"i": d.id})
        return gone


def load(cat: Catalog) -> list[Decision]:
    """Every stored decision, oldest first."""
    with cat.session() as s:
        rows = s.execute(
            text(
                "SELECT id, kind, hashes, paths, created_at, note FROM decisions "
                "ORDER BY created_at, id"
            )
        ).all()
    return [
        Decision(r[0], r[1], tuple(json.loads(r[2])), tuple(json.loads(r[3])), r[4], r[5])
        for r in rows
    ]


def _paths_now(cat: Catalog, hashes: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with cat.session() as s:
        for chunk in chunked(sorted(hashes)):
            query = select(Content.hash, File.path).join(File, File.content_id == Content.id)
            for digest, path in s.execute(query.where(Content.hash.in_(chunk)).order_by(File.path)):
                out.setdefault(digest, []).append(path)
    return out


class Rules:
    """Decisions as one dedup run sees them, by content id.

    `distinct`: a union of two components that would put two pictures of one decision together
    is refused (links are tried strongest first, so the weaker link gives way). `keep`: the
    decided picture is the kept file of its groups.
    """

    def __init__(self, decisions: Sequence[Decision] = (), cid_of: dict[str, int] | None = None):
        cid_of = cid_of or {}
        self.keep: dict[int, Decision] = {}  # content id → its (latest) keep decision
        self.apart: dict[int, set[int]] = {}  # component root → ids of distinct decisions
        self.copies: set[int] = set()  # contents whose byte copies are all wanted
        self.blocked: set[int] = set()  # contents at the end of a refused link (this tier)
        for d in decisions:
            cids = [cid_of[h] for h in d.hashes if h in cid_of]
            if d.kind == "keep":
                self.keep.update((c, d) for c in cids)
            elif len(d.hashes) == 1:
                self.copies.update(cids)
            else:
                for c in cids:
                    self.apart.setdefault(c, set()).add(d.id)

    def join(self, uf: UnionFind, x: int, y: int) -> bool:
        """Union the components of x and y unless a distinct decision keeps them apart."""
        if not self.apart:
            uf.union(x, y)
            return True
        rx, ry = uf.find(x), uf.find(y)
        if rx == ry:
            return True
        mx, my = self.apart.pop(rx, set()), self.apart.pop(ry, set())
        if mx & my:
            self.apart[rx], self.apart[ry] = mx, my
            self.blocked.update((x, y))
            return False
        if mx | my:
            self.apart[uf.union(x, y)] = mx | my
        else:
            uf.union(x, y)
        return True

    def keeper(
        self, members: list[Member], kept: Member, reason: str, rule: str, prefer: Sequence[str]
    ) -> tuple[Member, str, str | None]:
        """(kept member, reason, "keep" | "distinct" | None): a keep decision overrides the rule.

        Among decided pictures, the path the decision was made on wins, then the keep rule.
        """
        decided = [m for m in members if m["content_id"] in self.keep]
        touched = "distinct" if any(m["content_id"] in self.blocked for m in members) else None
        if not decided:
            return kept, reason, touched
        named = [m for m in decided if m["path"] in self.keep[m["content_id"]].paths]
        pool = named or decided
        if not any(m["path"] == kept["path"] for m in pool):
            kept = choose_keep(pool, rule, prefer)[0]
        day = self.keep[kept["content_id"]].day
        return kept, f"your decision (index decide keep, {day})", "keep"

    def protects(self, member: Member, kept: Member) -> bool:
        """Another picture you decided to keep, in a group whose kept file is not it."""
        cid = member["content_id"]
        return cid in self.keep and cid != kept["content_id"]
