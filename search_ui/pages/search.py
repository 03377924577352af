"""Search page: type words, upload an image or pick an indexed one; results as a grid of
thumbnails.

Every result and every picked picture goes by catalog content id; no typed path is opened.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from typing import Any

import numpy as np
import streamlit as st

from indexer import imaging
from indexer.errors import (
    CheckpointError,
    DeviceError,
    EncoderError,
    WeightsError,
    describe_os_error,
)
from indexer.files import human_size
from indexer.query import Term
from indexer.search import Filters, Hit, SearchError
from indexer.thumbs import jpeg_thumbnail
from search_ui import state
from search_ui.common import CatalogView, Loaded, open_index, thumb, upload_limit_mb
from search_ui.text import code, describe, md

COLUMNS = 4
PICK_LIMIT = 200


def _on_upload() -> None:
    upload = st.session_state.get("uploader")
    if upload is not None:
        state.accept_upload(st.session_state, upload.name, upload.getvalue(), upload_limit_mb())
    elif (q := st.session_state.get(state.QUERY)) is not None and q.is_upload:
        st.session_state.pop(state.QUERY, None)  # the upload was removed


def _on_words() -> None:
    state.accept_text(st.session_state, st.session_state.get("words") or "")


def _on_pick(ids: dict[str, int]) -> None:
    path = st.session_state.get("pick")
    if path in ids:
        state.accept_indexed(st.session_state, ids[path], path)


def sidebar_filters(view: CatalogView) -> tuple[int, Filters]:
    """k and the folder / date / size filters, from choices the catalog offers."""
    with st.sidebar:
        st.header("Results")
        k = st.slider("How many (k)", 1, 100, 12, key="k")
        folder = st.selectbox("Folder", ["(all)", *view.folders], key="folder")
        date_from = date_to = None
        if view.dates:
            first, last = (dt.date.fromisoformat(d[:10]) for d in view.dates)
            if st.checkbox("Only pictures taken between…", key="use_dates"):
                picked = st.date_input(
                    "Taken",
                    (first, last),
                    min_value=dt.date(1826, 1, 1),
                    max_value=max(last, dt.date.today()),
                    key="dates",
                )
                if isinstance(picked, tuple) and len(picked) == 2:
                    date_from, date_to = picked[0].isoformat(), picked[1].isoformat()
        else:
            st.caption("No indexed picture has an EXIF date.")
        top = max(0.01, math.ceil(view.max_size / 1024 / 1024 * 100) / 100)
        low, high = st.slider("File size (MB)", 0.0, top, (0.0, top), 0.01, key="size")
    filters = Filters(
        folder=None if folder == "(all)" else folder,
        date_from=date_from,
        date_to=date_to,
        min_size=int(low * 1024 * 1024) if low > 0 else None,
        max_size=math.ceil(high * 1024 * 1024) if high < top else None,
    )
    return k, filters


def query_inputs(view: CatalogView) -> None:
    """The words box, the drop zone and the indexed-picture picker (its text box only filters
    catalog paths)."""
    left, right = st.columns(2)
    with left:
        st.text_input(
            "Describe what you look for",
            key="words",
            placeholder="a dog running on the beach",
            on_change=_on_words,
        )
        st.file_uploader(
            f"Drop an image here (up to {upload_limit_mb():g} MB)",
            key="uploader",
            on_change=_on_upload,
        )
    with right:
        needle = st.text_input("…or find an indexed picture by name", key="needle").lower()
        matches = [p for p in view.ids if needle in p.lower()][:PICK_LIMIT]
        st.selectbox(
            f"Indexed pictures ({len(matches)} shown)",
            matches,
            index=None,
            placeholder="Choose a picture",
            key="pick",
            on_change=_on_pick,
            args=(view.ids,),
        )


def embed(loaded: Loaded, query: state.Query) -> tuple[np.ndarray, bytes | None]:
    """The vector of typed words or of an upload (through the library) and the upload's
    preview; the text tower loads once, with the cached searcher."""
    if query.text is not None:
        return loaded.searcher.query_vector([Term(text=query.text)]), None
    data = query.data or b""
    vector = loaded.searcher.query_vector([Term(image=data, name=query.label)])
    options = imaging.DecodeOptions.from_settings(loaded.settings)
    return vector, jpeg_thumbnail(data, 160, options=options, name=query.label)


def find(loaded: Loaded, query: state.Query, k: int, filters: Filters) -> list[Hit] | None:
    """Run the query through the library; a refused query leaves a message, not a traceback."""
    searcher = loaded.searcher
    try:
        with loaded.lock, st.spinner("Searching…"):
            if query.content_id is not None:
                return searcher.more_like(query.content_id, k, filters)
            if query.vector is None:
                query = state.embedded(st.session_state, query, *embed(loaded, query))
            return searcher.search_vector(query.vector, k, filters)
    except (SearchError, imaging.ImageError) as exc:
        if query.is_text:  # the library's words: what is missing and how to give it
            state.refuse(st.session_state, f"Cannot search with these words: {md(exc)}")
            return None
        reason = getattr(exc, "reason", None) or str(exc).split(": ", 1)[-1]
        label = code(os.path.basename(query.label))
        state.refuse(st.session_state, f"Cannot search with this image ({label}): {md(reason)}")
    except (CheckpointError, WeightsError, DeviceError, EncoderError) as exc:
        state.refuse(st.session_state, f"The encoder could not answer: {md(exc)}")
    except OSError as exc:  # the weights or the index cannot be read: a full disk, rights...
        line = describe_os_error(exc, loaded.settings.index) or str(exc)
        state.refuse(st.session_state, f"The encoder could not answer: {md(line)}")
    return None


def show_query(loaded: Loaded, query: state.Query) -> None:
    """What the results answer: the query's words, or its thumbnail and name, above the grid."""
    with st.container(key="query"):
        pic, text = st.columns([1, 6])
        if query.is_text:
            text.markdown(f"**Query:** {code(query.label)}")
            text.caption("typed words")
            return
        data = query.preview if query.is_upload else thumb(loaded, query.content_id or 0)
        if data:
            pic.image(data, width="stretch")
        text.markdown(f"**Query:** {code(os.path.basename(query.label))}")
        text.caption("uploaded picture" if query.is_upload else md(query.label))


def show_opened(loaded: Loaded, hit: Hit) -> None:
    """One result large, with everything the catalog knows about it."""
    with st.container(border=True, key="opened"):
        left, right = st.columns([3, 2])
        data = thumb(loaded, hit.id, 1024)
        if data:
            left.image(data, width="stretch")
        right.markdown(f"#### {code(os.path.basename(hit.path))}")
        rows = {
            "Path": code(hit.path),
            "Score": f"{hit.score:.4f}",
            "Dimensions": f"{hit.width}×{hit.height}",
            "Format": md(hit.format or "—"),
            "Size": f"{human_size(hit.size)} ({hit.size:,} bytes)" if hit.size else "—",
            "Taken": md(hit.taken_at or "—"),
            "Camera": md(hit.camera or "—"),
        }
        if hit.copies:  # the same bytes under other names
            rows["Copies"] = ", ".join(code(p) for p in hit.copies)
        right.markdown("\n".join(f"- **{name}:** {value}" for name, value in rows.items()))
        buttons = right.container(horizontal=True, gap="small")
        buttons.button(
            "More like this",
            key="opened-more",
            on_click=state.accept_indexed,
            args=(st.session_state, hit.id, hit.path),
        )
        if buttons.button("Close", key="opened-close"):
            st.session_state.pop(state.OPENED, None)
            st.rerun()


def _card(loaded: Loaded, hit: Hit) -> None:
    with st.container(border=True, key=f"hit-{hit.rank}"):
        data = thumb(loaded, hit.id)
        if data:
            st.image(data, width="stretch")
        st.markdown(f"**#{hit.rank}** · {hit.score:.4f} · {code(os.path.basename(hit.path))}")
        st.caption(describe(hit.as_dict()))
        if hit.copies:  # one card per picture: its byte-identical copies are named, not repeated
            st.caption(
                f":gray-badge[{len(hit.copies) + 1} copies] also "
                + ", ".join(md(os.path.dirname(p)) for p in hit.copies[:3])
                + (f" and {len(hit.copies) - 3} more" if len(hit.copies) > 3 else ""),
                help="\n".join(code(p) for p in [hit.path, *hit.copies]),
            )
        with st.container(horizontal=True, gap="small"):  # wraps when the card is narrow
            st.button(
                "More like this",
                key=f"more-{hit.rank}",
                on_click=state.accept_indexed,
                args=(st.session_state, hit.id, hit.path),
            )
            if st.button("Open", key=f"open-{hit.rank}"):
                st.session_state[state.OPENED] = hit.path
                st.rerun()


def show_grid(loaded: Loaded, hits: list[Hit]) -> None:
    """The results grid, with the opened result (if any) above it."""
    st.subheader(f"Results ({len(hits)})")
    if not hits:
        st.write("No picture matches these filters.")
        return
    opened = st.session_state.get(state.OPENED)
    for hit in hits:
        if hit.path == opened:
            show_opened(loaded, hit)
            break
    with st.container(key="results"):
        for row in range(0, len(hits), COLUMNS):
            for col, hit in zip(st.columns(COLUMNS), hits[row : row + COLUMNS], strict=False):
                with col:
                    _card(loaded, hit)


def main() -> None:
    """The Search page: inputs, then the results of the current query (if any).

    Uploads put in session_state by tests take the same path as the drop zone's.
    """
    st.title("Search by words or image")
    opened = open_index()
    if opened is None:
        return
    loaded, view = opened
    state.take_scripted_upload(st.session_state, upload_limit_mb())
    k, filters = sidebar_filters(view)
    query_inputs(view)
    query: Any = st.session_state.get(state.QUERY)
    hits = None if query is None else find(loaded, query, k, filters)
    message = st.session_state.get(state.MESSAGE)
    if message:
        st.error(message)
    if hits is None:
        if not message:
            st.caption(
                f"{view.images} pictures indexed. Type words, drop a picture or pick one to search."
            )
        return
    show_query(loaded, st.session_state[state.QUERY])
    milvus = loaded.settings.milvus
    if milvus:
        from indexer.milvus.client import shown  # a password in the URI is masked

        where = f"collection {code(loaded.settings.milvus_collection)} at {code(shown(milvus))}"
        st.caption(f"Answered from Milvus, {where}.")
    if loaded.searcher.lagging and milvus:
        st.caption("The Milvus collection lags the catalog: run `index export --format milvus`.")
    elif loaded.searcher.lagging:
        st.caption("The FAISS file lagged the catalog; it was caught up in memory.")
    show_grid(loaded, hits)


main()
