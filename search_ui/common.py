"""What every page shares: settings, the per-process searcher, a catalog view, thumbnails.

`index serve` passes the index folder and weights as PHOTO_INDEX_* variables (read only by
`Settings.from_env`); the upload cap is Streamlit's own `server.maxUploadSize` option.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from indexer.errors import describe_os_error
from indexer.imaging import DecodeOptions
from indexer.search import Searcher
from indexer.settings import Settings
from indexer.store.catalog import CATALOG_FILE, CatalogError, NewerCatalogError
from indexer.thumbs import thumbnail_bytes
from search_ui.text import code, md


@dataclass
class Loaded:
    """The per-process searcher (encoder + FAISS + catalog) and a lock serialising its queries."""

    settings: Settings
    searcher: Searcher
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class CatalogView:
    """What the pages list from the catalog, read once per catalog change (not per rerun)."""

    images: int
    vectors: int
    failures: int
    ids: dict[str, int]  # path -> content id
    folders: list[str]  # every folder holding pictures, with its parents up to the common root
    max_size: int
    dates: tuple[str, str] | None  # earliest and latest EXIF date, if any picture has one


def ui_settings() -> Settings:
    """Settings from PHOTO_INDEX_* (what `index serve` set), read on every script run.

    Cheap, and it keeps the pages free of module-level state.
    """
    return Settings.from_env()


def upload_limit_mb() -> float:
    """The upload cap in MB: Streamlit's `server.maxUploadSize` (`index serve --max-upload-mb`).

    One number for the browser's refusal and for the page's own check.
    """
    return float(st.get_option("server.maxUploadSize"))


def catalog_stamp(index: Path) -> tuple[Any, ...]:
    """Identity and change stamp of the catalog files; a build's commit changes it.

    SQLite in WAL mode appends commits to `-wal`, so both files are stat'ed.
    """
    out: list[Any] = []
    for name in (CATALOG_FILE, CATALOG_FILE + "-wal"):
        try:
            s = (index / name).stat()
            out.append((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _release(loaded: Loaded) -> None:
    loaded.searcher.close()


@st.cache_resource(show_spinner=False, max_entries=4, on_release=_release)
def _load(_settings: Settings, key: tuple[Any, ...]) -> Loaded:
    """One Searcher per index file; the encoder loads lazily on the first query."""
    return Loaded(_settings, Searcher(_settings))


@st.cache_resource(show_spinner=False, max_entries=4)
def _view(_loaded: Loaded, key: tuple[Any, ...]) -> CatalogView:
    cat = _loaded.searcher.catalog
    counts = cat.counts()
    ids: dict[str, int] = {}
    dirs: set[str] = set()
    max_size, dates = 0, []
    for rec in cat.records():
        ids[rec["path"]] = rec["content_id"]
        dirs.add(os.path.dirname(rec["path"]))
        max_size = max(max_size, rec["size"] or 0)
        if _is_date(rec["taken_at"]):
            dates.append(rec["taken_at"])
    return CatalogView(
        images=counts["images"],
        vectors=counts["vectors"],
        failures=counts["failures"],
        ids=ids,
        folders=_with_parents(dirs),
        max_size=max_size,
        dates=(min(dates), max(dates)) if dates else None,
    )


def _is_date(value: str | None) -> bool:
    try:
        return bool(value) and bool(dt.date.fromisoformat(str(value)[:10]))
    except ValueError:
        return False


def _with_parents(dirs: set[str]) -> list[str]:
    if not dirs:
        return []
    root = os.path.commonpath(sorted(dirs))
    out = set()
    for d in dirs:
        while len(d) >= len(root):
            out.add(d)
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
    return sorted(out)


def build_hint(settings: Settings, why: str) -> None:
    """Say how to build an index instead of showing a traceback."""
    index = settings.index.absolute()
    st.info(
        f"{why}\n\nBuild one with:\n\n```\nindex build PATH/TO/PHOTOS --index {index}\n```\n\n"
        "then reload this page (a build that finishes while the app runs is picked up).",
        icon=":material/photo_library:",
    )


def open_index() -> tuple[Loaded, CatalogView] | None:
    """The loaded index and its catalog view, or None after showing how to build one.

    Reopened when the catalog file is replaced; rows a running build commits are seen at once.
    """
    settings = ui_settings()
    stamp = catalog_stamp(settings.index)
    if stamp[0] is None:
        build_hint(settings, f"There is no index at {code(settings.index.absolute())} yet.")
        return None
    key = (
        str(settings.index.absolute()),
        settings.weights,
        settings.text_weights,  # the text tower loads once per searcher, from these
        settings.device,
        settings.dtype,
        settings.max_megapixels,
        settings.max_decode_mb,
        settings.milvus,  # `index serve --milvus URI`: answers from that collection
        settings.milvus_collection,
        stamp[0][:2],  # device and inode: a replaced catalog file gets a fresh Searcher
    )
    try:
        loaded = _load(settings, key)
        view = _view(loaded, (*key, stamp))
    except NewerCatalogError as exc:  # building would not help: this app is too old
        st.error(md(exc), icon=":material/upgrade:")
        return None
    except CatalogError as exc:
        build_hint(settings, md(exc))
        return None
    except Exception as exc:  # a full disk or a read-only index: say what to free or fix
        message = describe_os_error(exc, settings.index)
        if message is None:
            raise
        st.error(md(message))
        return None
    if view.images == 0:
        build_hint(settings, f"The index at {code(settings.index.absolute())} has no pictures yet.")
        return None
    return loaded, view


def thumb(loaded: Loaded, content_id: int, size: int = 256) -> bytes | None:
    """Cached thumbnail of an indexed content (by id: the only way the UI reads a picture)."""
    options = DecodeOptions.from_settings(loaded.settings)
    return thumbnail_bytes(loaded.searcher.catalog, content_id, size, options)
