"""`index stats` and `index verify`: what is in an index, and whether its parts agree.

Verify compares catalog ⇄ FAISS ⇄ files; repair only ever drops what no longer exists and
rebuilds the FAISS file from the stored vectors — it never re-embeds.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select

from indexer import atomic
from indexer.errors import DamagedCatalogError
from indexer.files import human_size, printable_path
from indexer.settings import Settings
from indexer.store import sync, tombstones, vectors
from indexer.store.catalog import (
    CATALOG_FILE,
    MIGRATIONS,
    Catalog,
    Content,
    File,
    ForeignSchemaError,
    buried,
    chunked,
    has_file,
)
from indexer.store.home import require_content
from indexer.store.locking import WriterLock
from indexer.store.salvage import salvage


def _disk_sizes(index_dir: Any) -> dict[str, int]:
    sizes: dict[str, int] = {}
    total = 0
    for root, _dirs, names in os.walk(index_dir):
        for name in names:
            try:
                size = os.lstat(os.path.join(root, name)).st_size  # a link's own size
            except OSError:
                continue
            total += size
            if root == str(index_dir):
                sizes[name] = size
    sizes["total"] = total
    return sizes


def stats(settings: Settings) -> dict[str, Any]:
    """Counts, index parameters, encoder and bytes on disk (the `stats --json` contract)."""
    cat = Catalog(settings.index, readonly=True)
    try:
        counts = require_content(cat, needs=("images", "failures"))
        meta = cat.all_meta()
        info = meta.get("index", {})
        return {
            "index": str(settings.index.absolute()),
            **counts,
            "index_type": info.get("index_type"),
            "nlist": info.get("nlist"),
            "nprobe": info.get("nprobe"),
            "recall_at_10": info.get("recall_at_10"),
            "search_ms": info.get("search_ms"),
            "encoder": meta.get("encoder"),
            "last_build": meta.get("last_build", {}).get("seconds")
            and {
                k: meta["last_build"][k]
                for k in ("new", "changed", "moved", "deleted", "failed", "embedded", "seconds")
            },
            "disk_bytes": _disk_sizes(settings.index),
        }
    finally:
        cat.close()


def failures(settings: Settings) -> list[dict[str, Any]]:
    """The failure ledger (`index failures`); CatalogError when there is no index to read."""
    cat = Catalog(settings.index, readonly=True)
    try:
        require_content(cat, needs=("images", "failures"))
        return cat.failures()
    finally:
        cat.close()


def _catalog_damage(settings: Settings) -> tuple[str, Any] | None:
    """("catalog_integrity", what SQLite reports) for a damaged catalog, ("foreign_schema",
    the objects) for one holding SQL we did not write: both are salvaged by --repair."""
    try:
        cat = Catalog(settings.index, readonly=True)
    except DamagedCatalogError as exc:
        return "catalog_integrity", str(exc)
    except ForeignSchemaError as exc:
        return "foreign_schema", exc.objects
    try:
        damage = cat.damage()
    finally:
        cat.close()
    return None if damage is None else ("catalog_integrity", damage)


def verify(settings: Settings, *, repair: bool = False) -> dict[str, Any]:
    """Find missing files, orphan rows/vectors and a stale or corrupt FAISS file; maybe repair."""
    problems: dict[str, Any] = {}
    messages: list[str] = []
    damage = _catalog_damage(settings)
    if damage:
        problems[damage[0]] = damage[1]
        if not repair:
            return {"problems": problems, "messages": _explain(problems), "repaired": False}
        messages.append(_salvage(settings, damage[0]))
        problems.pop(damage[0])
    cat = Catalog(settings.index, readonly=True)
    try:
        if not damage:
            require_content(cat, needs=("images", "vectors", "failures"))
        with cat.session() as s:
            rows = s.execute(select(File.path, File.size, File.mtime_ns)).all()
            # contents without a file: tombstones (dated, kept on purpose) or orphans (not)
            orphans = s.scalar(select(func.count(Content.id)).where(~has_file(), ~buried()))
            n_buried = s.scalar(select(func.count(Content.id)).where(buried(), ~has_file()))
            unembedded = s.scalar(
                select(func.count(Content.id)).where(Content.vector.is_(None), has_file())
            )
        _check_files(rows, problems)
        if orphans:
            problems["orphan_contents"] = orphans
        if unembedded:
            problems["unembedded_contents"] = unembedded
        catalog_ids, _ = cat.all_vectors()
        _check_faiss(settings, cat, catalog_ids, problems)
    finally:
        cat.close()
    temps = _leftover_temps(settings, problems)
    messages.append(f"checked {len(rows)} files, {len(catalog_ids)} vectors")
    if n_buried:
        messages.append(
            f"{n_buried} tombstones: vectors of pictures no file uses now, kept for relinking "
            f"({settings.tombstone_days:g} days; `index gc` drops them now)"
        )
    messages.extend(_explain(problems))
    repaired = bool(repair and (problems or damage))
    messages.extend(_clean_temps(temps, remove=repaired))
    if repaired and (damage or set(problems) - {"leftover_temps"}):
        messages.extend(_repair(settings, problems))
    elif not problems:
        messages.append("ok: catalog, FAISS index and files agree")
    return {
        "problems": problems,
        "messages": messages,
        "repaired": repaired,
        "tombstones": n_buried,
    }


def _salvage(settings: Settings, problem: str) -> str:
    """Salvage a damaged (or foreign-schema) catalog's rows into a fresh one; the old file is
    kept beside it."""
    with WriterLock(settings.index):
        kept = salvage(settings.index / CATALOG_FILE, MIGRATIONS)
    rows = ", ".join(f"{n} {t}" for t, n in kept.items())
    if problem == "foreign_schema":
        return (
            f"repaired: catalog rebuilt from its rows without the SQL photo-index did not "
            f"write ({rows} rows kept; the old file is kept beside it)"
        )
    return f"repaired: catalog salvaged ({rows} rows kept; the damaged file is kept beside it)"


def _check_files(rows: list[Any], problems: dict[str, Any]) -> None:
    """Indexed paths that are gone, or whose size or mtime changed since they were indexed."""
    missing, changed = [], []
    for path, size, mtime_ns in rows:
        try:
            st = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            changed.append(path)
    if missing:
        problems["missing_files"] = missing
    if changed:
        problems["changed_files"] = changed


def _check_faiss(
    settings: Settings, cat: Catalog, catalog_ids: np.ndarray, problems: dict[str, Any]
) -> None:
    """FAISS ids against the catalog's, and the FAISS file's generation against the catalog's."""
    try:
        index, state = vectors.load(sync.index_path(settings.index), cat.expected_index())
    except FileNotFoundError:
        if len(catalog_ids):
            problems["index_file"] = "missing"
        return
    except vectors.IndexFileError as exc:
        problems["index_file"] = str(exc)
        return
    faiss_ids = index.ids()
    extra = np.setdiff1d(faiss_ids, catalog_ids)
    lost = np.setdiff1d(catalog_ids, faiss_ids)
    if len(extra):
        problems["orphan_vectors"] = int(len(extra))
    if len(lost):
        problems["vectors_not_in_index"] = int(len(lost))
    if state.get("generation") != cat.generation() and not (len(extra) or len(lost)):
        problems["index_generation_lags"] = True


def _explain(problems: dict[str, Any]) -> list[str]:
    hints = {
        "catalog_integrity": "{v}",
        "foreign_schema": "the catalog holds SQL photo-index did not write ({j}); "
        "`index verify --repair` rebuilds it from its rows without them (the old file is kept)",
        "missing_files": "{n} indexed files no longer exist; `index verify --repair` drops them",
        "changed_files": "{n} files changed on disk since indexing; run `index build` again",
        "orphan_contents": "{v} contents have no file; `index verify --repair` makes them "
        "tombstones",
        "unembedded_contents": "{v} contents have no vector; run `index build` to embed them",
        "orphan_vectors": "{v} FAISS vectors are not in the catalog; --repair rebuilds the index",
        "vectors_not_in_index": "{v} vectors are missing from FAISS; --repair rebuilds the index",
        "index_generation_lags": "the FAISS file is older than the catalog; --repair resaves it",
        "index_file": "the FAISS index file is bad ({v}); --repair rebuilds it from the catalog",
        "leftover_temps": "{n} temp files left by interrupted writes; --repair removes them",
    }
    out = []
    for key, value in problems.items():
        n = len(value) if isinstance(value, list) else value
        joined = "; ".join(value) if isinstance(value, list) else value
        out.append("problem: " + hints[key].format(v=value, n=n, j=joined))
        if isinstance(value, list) and key != "foreign_schema":
            out.extend(f"  {p}" for p in value[:20])
    return out


def _leftover_temps(settings: Settings, problems: dict[str, Any]) -> list[atomic.TempFile]:
    """Temp files of atomic writes in the index home; those of dead writers are a problem."""
    temps = atomic.find_temps(settings.index, recursive=True)
    stale = [_temp_line(settings, t) for t in temps if t.stale]
    if stale:
        problems["leftover_temps"] = stale
    return temps


def _clean_temps(temps: list[atomic.TempFile], *, remove: bool) -> list[str]:
    """Say how many temps belong to live writers; remove the dead writers' when repairing."""
    out = []
    live = sum(not t.stale for t in temps)
    if live:
        out.append(f"note: {live} temp files are recent or belong to running writers; left alone")
    if remove and live < len(temps):
        gone = atomic.remove_stale(temps)
        size = human_size(sum(t.size for t in gone))
        out.append(f"repaired: removed {len(gone)} leftover temp files ({size})")
    return out


def _temp_line(settings: Settings, temp: atomic.TempFile) -> str:
    """'thumbs/256/ab/.x.jpg.tmp-123-0a1b2c3d (4.1 MB, writer pid 123)' for the report."""
    name = printable_path(os.path.relpath(temp.path, settings.index))
    who = "writer unknown" if temp.pid is None else f"writer pid {temp.pid}"
    return f"{name} ({human_size(temp.size)}, {who})"


def _repair(settings: Settings, problems: dict[str, Any]) -> list[str]:
    """Drop vanished files; contents left without files become tombstones (a later build
    relinks them by content hash instead of re-embedding); rebuild FAISS."""
    out = []
    with WriterLock(settings.index):
        cat = Catalog(settings.index)
        try:
            missing = problems.get("missing_files", [])
            with cat.session() as s:
                for chunk in chunked(missing):
                    s.execute(delete(File).where(File.path.in_(chunk)))
                s.flush()
                gone = tombstones.bury_pathless(s)
                if missing or gone:
                    Catalog.bump_generation(s)
            if missing:
                out.append(f"repaired: dropped {len(missing)} missing files")
            if gone:
                out.append(f"repaired: {len(gone)} contents without files kept as tombstones")
            info = sync.sync_index(cat, settings, rebuild=True)
            out.append(
                f"repaired: FAISS index rebuilt from the catalog ({info['vectors']} vectors, "
                f"{info['index_type']}), nothing re-embedded"
            )
        finally:
            cat.close()
    return out
