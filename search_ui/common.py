"""What every page shares: settings from the environment, cached searcher, empty-index message.

`index serve` passes the index folder and weights through PHOTO_INDEX_* variables.
"""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from indexer.catalog import Catalog, CatalogError
from indexer.settings import Settings
from indexer.thumbs import thumbnail_bytes

MAX_UPLOAD_MB = float(os.environ.get("PHOTO_INDEX_MAX_UPLOAD_MB", "20"))


def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner="Loading the encoder and the index…")
def _searcher(index: str, weights: str | None, device: str) -> Any:
    from indexer.search import Searcher

    return Searcher(Settings.from_env(index=index, weights=weights, device=device))


def searcher() -> Any:
    """One Searcher per process; it reloads the FAISS file when a build saves a new one."""
    s = settings()
    return _searcher(str(s.index), s.weights, s.device)


def open_catalog() -> Catalog | None:
    """The catalog, or None after showing how to build an index."""
    s = settings()
    try:
        cat = Catalog(s.index, readonly=True)
        if cat.counts()["images"] == 0:
            raise CatalogError("empty")
        return cat
    except CatalogError:
        st.info(
            f"No index at `{s.index.absolute()}` yet. Build one with:\n\n"
            f"```\nindex build PATH/TO/PHOTOS --index {s.index}\n```\n\nthen reload this page."
        )
        return None


def thumb(cat: Catalog, content_id: int, size: int = 256) -> bytes | None:
    return thumbnail_bytes(cat, content_id, size)


def describe(rec: dict[str, Any]) -> str:
    """One caption line: name, folder, dimensions, date."""
    folder, name = os.path.split(rec["path"])
    date = (rec.get("taken_at") or "")[:10] or "no date"
    return f"{name} · {folder} · {rec.get('width')}×{rec.get('height')} · {date}"
