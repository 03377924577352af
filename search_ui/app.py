"""Search page: upload an image or pick an indexed one; results as a grid of thumbnails.

Run with `index serve`. Every result goes by catalog content id; no typed path is opened.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from indexer.imaging import ImageError  # noqa: E402
from indexer.search import Filters, SearchError  # noqa: E402
from search_ui.common import MAX_UPLOAD_MB, describe, open_catalog, searcher, thumb  # noqa: E402

COLUMNS = 4


def run_query(query: tuple[str, Any], k: int, filters: Filters) -> list | None:
    """("bytes", data) or ("id", content_id) → hits; shows a message and returns None on error."""
    kind, value = query
    if kind == "bytes" and len(value) > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(
            f"That file is {len(value) / 1e6:.1f} MB; uploads are limited to {MAX_UPLOAD_MB:g} MB."
        )
        return None
    try:
        s = searcher()
        if kind == "bytes":
            return s.search_image(value, k=k, filters=filters)
        return s.more_like(int(value), k=k, filters=filters)
    except (SearchError, ImageError) as exc:
        reason = getattr(exc, "reason", None) or str(exc).split(": ", 1)[-1]
        st.error(f"Cannot search with this image: {reason}")
        return None


def sidebar_filters(records: list[dict]) -> tuple[int, Filters]:
    with st.sidebar:
        k = st.slider("Results (k)", 1, 100, 12)
        folders = sorted({os.path.dirname(r["path"]) for r in records})
        folder = st.selectbox("Folder", ["(all)", *folders])
        use_dates = st.checkbox("Filter by date taken")
        date_from = date_to = None
        if use_dates:
            date_from = st.date_input("From", dt.date(2000, 1, 1)).isoformat()
            date_to = st.date_input("To", dt.date.today()).isoformat()
        min_mb, max_mb = st.slider("File size (MB)", 0.0, 100.0, (0.0, 100.0), 0.1)
    filters = Filters(
        folder=None if folder == "(all)" else folder,
        date_from=date_from,
        date_to=date_to,
        min_size=int(min_mb * 1e6) if min_mb > 0 else None,
        max_size=int(max_mb * 1e6) if max_mb < 100 else None,
    )
    return k, filters


def show_open(cat: Any, hit: Any) -> None:
    with st.container(border=True):
        left, right = st.columns([2, 1])
        data = thumb(cat, hit.id, 1024)
        if data:
            left.image(data, width="stretch")
        right.markdown(f"**{os.path.basename(hit.path)}**")
        right.table(
            {
                "path": hit.path,
                "score": f"{hit.score:.4f}",
                "dimensions": f"{hit.width}×{hit.height}",
                "format": hit.format,
                "size": f"{hit.size:,} bytes",
                "taken": hit.taken_at or "—",
                "camera": hit.camera or "—",
            }
        )
        if right.button("Close"):
            st.session_state.pop("open", None)
            st.rerun()


def show_grid(cat: Any, hits: list) -> None:
    st.subheader(f"Results ({len(hits)})")
    if not hits:
        st.write("No picture matches these filters.")
    opened = st.session_state.get("open")
    for hit in hits:
        if opened == hit.path:
            show_open(cat, hit)
    for row in range(0, len(hits), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, hit in zip(cols, hits[row : row + COLUMNS], strict=False):
            with col:
                data = thumb(cat, hit.id)
                if data:
                    st.image(data, width="stretch")
                st.markdown(f"**#{hit.rank}** · {hit.score:.4f} · `{os.path.basename(hit.path)}`")
                st.caption(describe(hit.as_dict()))
                a, b = st.columns(2)
                if a.button("More like this", key=f"more-{hit.rank}"):
                    st.session_state["query"] = ("id", hit.id)
                    st.session_state.pop("open", None)
                    st.rerun()
                if b.button("Open", key=f"open-{hit.rank}"):
                    st.session_state["open"] = hit.path
                    st.rerun()


def main() -> None:
    st.set_page_config(page_title="photo-index · search", layout="wide")
    st.title("Search by image")
    cat = open_catalog()
    if cat is None:
        return
    records = cat.records()
    k, filters = sidebar_filters(records)
    upload = st.file_uploader(
        f"Drop an image here (up to {MAX_UPLOAD_MB:g} MB)", accept_multiple_files=False
    )
    by_path = {r["path"]: r["content_id"] for r in records}
    pick = st.selectbox("…or pick an indexed picture", ["", *by_path], index=0)
    if upload is not None:
        digest = (upload.name, upload.size)
        if st.session_state.get("upload_seen") != digest:
            st.session_state["upload_seen"] = digest
            st.session_state["query"] = ("bytes", upload.getvalue())
    elif "upload_bytes" in st.session_state:  # tests and scripted use
        st.session_state["query"] = ("bytes", st.session_state.pop("upload_bytes"))
    if pick and st.session_state.get("pick_seen") != pick:
        st.session_state["pick_seen"] = pick
        st.session_state["query"] = ("id", by_path[pick])
    query = st.session_state.get("query")
    if query is None:
        st.caption(f"{len(records)} pictures indexed. Upload or pick one to search.")
        return
    hits = run_query(query, k, filters)
    if hits is not None:
        show_grid(cat, hits)


main()
