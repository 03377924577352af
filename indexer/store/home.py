"""The index home: a first build creates it only to keep what it stores, and the commands that
read an index say how to fill it when it holds nothing yet.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from indexer import hints
from indexer.store.catalog import CATALOG_FILE, Catalog, CatalogError
from indexer.store.locking import WriterLock


def require_content(cat: Catalog, *, needs: tuple[str, ...]) -> dict[str, int]:
    """The catalog's counts; CatalogError saying how to fill the index when all of `needs` are 0.

    `needs` names counts ("images", "vectors", "failures"): search needs vectors, dedup images;
    stats, failures and verify still have something to show when only failures were recorded.
    """
    counts = cat.counts()
    if not any(counts[n] for n in needs):
        raise CatalogError(hints.empty_index(cat.index_dir, counts["failures"]))
    return counts


@contextmanager
def open_for_build(index_dir: str | Path) -> Iterator[Catalog]:
    """Lock the index and open (create) its catalog for a build.

    A build that fails before storing anything (weights that do not load, a bad root, Ctrl-C
    while loading) leaves no empty index behind: what this run created in the folder is removed.
    """
    index_dir = Path(os.path.abspath(index_dir))
    had_catalog = (index_dir / CATALOG_FILE).exists()
    before = set(os.listdir(index_dir)) if index_dir.is_dir() else None
    created = _first_missing(index_dir)
    discard = False
    try:
        with WriterLock(index_dir):
            catalog: Catalog | None = None
            try:
                catalog = Catalog(index_dir)
                yield catalog
            except BaseException:
                discard = not had_catalog and _stores_nothing(catalog)
                if discard:  # the lock file goes too: the lock is released right after
                    if catalog is not None:
                        catalog.close()
                    _remove_new(index_dir, before)
                raise
            finally:
                if catalog is not None:
                    catalog.close()
    finally:
        if discard and created is not None:
            for folder in (index_dir, *index_dir.parents):
                with suppress(OSError):
                    folder.rmdir()
                if folder == created:
                    break


def _first_missing(index_dir: Path) -> Path | None:
    """The outermost folder of `index_dir`'s path that does not exist yet (None: it exists)."""
    missing = None
    for folder in (index_dir, *index_dir.parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def _stores_nothing(catalog: Catalog | None) -> bool:
    if catalog is None:  # it could not even be created
        return True
    try:
        counts = catalog.counts()
    except Exception:  # noqa: BLE001 - cannot tell: keep it rather than risk stored work
        return False
    return not (counts["images"] or counts["vectors"] or counts["failures"])


def _remove_new(index_dir: Path, before: set[str] | None) -> None:
    """Remove the entries of `index_dir` that were not there before this run."""
    try:
        names = set(os.listdir(index_dir))
    except OSError:
        return
    for name in names - (before or set()):
        path = index_dir / name
        with suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
