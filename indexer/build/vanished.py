"""Which indexed files a build may remove: never those under a folder it could not see.

A root that is not there, not a folder or empty (an unmounted disk, an offline NAS), a folder
that could not be listed, or a large share of a root vanishing at once looks like a missing
drive, not like deleted photos: those files stay indexed, with one warning line per folder,
until the user confirms with `--prune`. What is removed still leaves a tombstone behind.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import func, select

from indexer import files as fs
from indexer.store.catalog import CATALOG_FILE, Catalog, CatalogError, File

MASS_SHARE = 0.5  # more than this share of a root's indexed files gone at once...
MASS_MIN = 10  # ...and at least this many (fewer deletions always proceed)...
MASS_FILES = 1000  # ...or more than this many files gone in one build: needs --prune


def indexed_under(cat: Catalog, folder: str) -> int:
    """How many catalog paths are `folder` itself or inside it (exact, case-sensitive)."""
    start = folder.rstrip(os.sep) + os.sep
    end = start[:-1] + chr(ord(os.sep) + 1)  # every path that begins with start sorts below
    with cat.session() as s:
        return s.scalar(
            select(func.count(File.id)).where(
                (File.path == folder) | ((File.path >= start) & (File.path < end))
            )
        )


def unknown_root(index_dir: Path, roots: list[str]) -> str | None:
    """The first root that does not exist and has nothing indexed under it: a typo, not an
    unmounted drive. (A catalog that cannot be read here answers at the build's own open.)"""
    missing = [r for r in roots if not os.path.exists(r)]
    if not missing or not (index_dir / CATALOG_FILE).exists():
        return next(iter(missing), None)
    try:
        cat = Catalog(index_dir, readonly=True)
    except CatalogError:  # damaged, or older: the build says so, or upgrades it first
        return None
    try:
        return next((r for r in missing if not indexed_under(cat, r)), None)
    finally:
        cat.close()


class VanishGuard:
    """Decides, for one build, which vanished paths are removed; collects the warnings."""

    def __init__(self, roots: list[str], prune: bool, warnings: list[str]) -> None:
        self.roots = roots
        self.prune = prune
        self.warnings = warnings  # appended to: the build summary's list

    def hold_unseen(self, scan: fs.ScanResult, deleted: list[str]) -> list[str]:
        """`deleted` less the paths under a folder the scan could not see (all of them with
        --prune); one warning per such folder with the count of indexed files it kept (and
        per root not there, even with nothing under it)."""
        watched = _unseen(scan)
        if not watched:
            return deleted
        out, kept = _split(deleted, watched)
        for folder, reason in watched.items():
            if kept[folder] or reason == "not there":
                self.warnings.append(self._unseen_line(folder, reason, kept[folder]))
        return deleted if self.prune else out

    def seen_gone(self, scan: fs.ScanResult, paths: list[str]) -> list[str]:
        """`paths` less those under a folder the scan could not see (with --prune: all):
        ledger entries there are kept like the indexed files."""
        watched = _unseen(scan)
        return paths if self.prune or not watched else _split(paths, watched)[0]

    def _unseen_line(self, folder: str, reason: str, n: int) -> str:
        name = fs.printable_path(folder)
        root = folder in self.roots
        if root and reason in ("not there", "empty"):
            reason += " (unmounted?)"
        files = f"its {n} indexed file{'s' * (n != 1)}"
        if not n:
            return f"{name}: {reason}; nothing indexed under it"
        if self.prune:
            return f"{name}: {reason}; removed {files} (--prune)"
        again = "when it is back" if root else "once it can be read"
        return f"{name}: {reason}; kept {files}; run again {again}, or pass --prune to remove them"

    def hold_mass(
        self,
        deleted: list[str],
        old_content: dict[str, int],
        left: dict[int, int],
        indexed: Iterable[str],
    ) -> list[str]:
        """`deleted` less the paths gone (not moved: see not_moved) from a root that lost too
        many at once, unless --prune; one warning per such root."""
        held = self._mass(not_moved(deleted, old_content, left), indexed)
        return [p for p in deleted if p not in held] if held else deleted

    def _mass(self, vanished: list[str], indexed: Iterable[str]) -> set[str]:
        if self.prune or len(vanished) < MASS_MIN:
            return set()
        gone = Counter(self._root_of(p) for p in vanished)
        total = Counter(self._root_of(p) for p in indexed)
        everything = len(vanished) > MASS_FILES
        held_roots = {
            r
            for r, n in gone.items()
            if everything or (n >= MASS_MIN and n > MASS_SHARE * total[r])
        }
        for root in sorted(held_roots):
            self.warnings.append(
                f"{fs.printable_path(root)}: {gone[root]} of {total[root]} indexed files are gone"
                " at once; kept them in the index (a missing drive looks like this); if you "
                "deleted them, run again with --prune"
            )
        return {p for p in vanished if self._root_of(p) in held_roots}

    def _root_of(self, path: str) -> str:
        return next((r for r in self.roots if fs.under_roots(path, [r])), "")


def not_moved(deleted: list[str], old_content: dict[str, int], left: dict[int, int]) -> list[str]:
    """The `deleted` paths whose content no new path took over (`left`: per content, how
    many of its deleted paths were not moves)."""
    left = dict(left)
    out = []
    for path in deleted:
        if left.get(old_content[path], 0) > 0:
            left[old_content[path]] -= 1
            out.append(path)
    return out


def _unseen(scan: fs.ScanResult) -> dict[str, str]:
    """Folder (or root, or file) → why the scan could not see what is under it."""
    return {**dict(scan.errors), **dict(scan.odd_roots), **dict(scan.unlisted)}


def _split(paths: list[str], watched: dict[str, str]) -> tuple[list[str], Counter[str]]:
    """(the `paths` under none of `watched`, how many of the others each one holds)."""
    kept: Counter[str] = Counter()
    out = []
    shortest = min(map(len, watched))
    for path in paths:
        owner = _owner(path, watched, shortest)
        if owner is None:
            out.append(path)
        else:
            kept[owner] += 1
    return out, kept


def _owner(path: str, folders: dict[str, str], shortest: int) -> str | None:
    """The nearest of `folders` that is `path` or contains it (walks up the parents, not
    above the shortest of them)."""
    while len(path) >= shortest:
        if path in folders:
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return None
