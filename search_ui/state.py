"""The search page's query state: an upload, typed words or an indexed picture becomes the
current `Query`.

Plain functions over a mapping (Streamlit's session_state in the app, a dict in tests), so the
upload handling can be exercised without a browser; nothing here opens a file.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from search_ui.text import code

QUERY = "query"  # the current Query
MESSAGE = "query_message"  # why the last upload was refused, shown until the next query
OPENED = "opened"  # path of the result shown large
SCRIPTED_UPLOAD = "upload_bytes"  # tests and scripts put raw bytes here instead of uploading


@dataclass(frozen=True)
class Query:
    """What to search with: uploaded bytes or typed words (each embedded once), or an indexed
    picture's content id."""

    label: str
    data: bytes | None = None
    content_id: int | None = None
    vector: np.ndarray | None = None
    preview: bytes | None = None
    text: str | None = None

    @property
    def is_upload(self) -> bool:
        """Whether the query came from the drop zone (then it has no catalog id)."""
        return self.content_id is None and self.text is None

    @property
    def is_text(self) -> bool:
        """Whether the query is typed words."""
        return self.text is not None


def upload_problem(name: str, data: bytes, limit_mb: float) -> str | None:
    """Why an upload cannot be a query (empty, over the size cap), or None when it can.

    The cap is checked here too because bytes can arrive without Streamlit's uploader.
    """
    if not data:
        return f"{code(name)} is empty."
    if len(data) > limit_mb * 1024 * 1024:
        return (
            f"{code(name)} is {len(data) / 1024 / 1024:.1f} MB; "
            f"uploads are limited to {limit_mb:g} MB. "
            "Pick the indexed copy instead, or restart with `index serve --max-upload-mb N`."
        )
    return None


def accept_upload(state: MutableMapping[str, Any], name: str, data: bytes, limit_mb: float) -> bool:
    """Make uploaded bytes the current query; on refusal keep a message for the page instead.

    Returns whether the upload was accepted.
    """
    problem = upload_problem(name, data, limit_mb)
    state.pop(OPENED, None)
    if problem:
        state.pop(QUERY, None)
        state[MESSAGE] = problem
        return False
    state[QUERY] = Query(label=name, data=bytes(data))
    state.pop(MESSAGE, None)
    return True


def accept_indexed(state: MutableMapping[str, Any], content_id: int, label: str) -> None:
    """Make an indexed picture (by catalog content id, never by path) the current query."""
    state[QUERY] = Query(label=label, content_id=int(content_id))
    state.pop(MESSAGE, None)
    state.pop(OPENED, None)


def accept_text(state: MutableMapping[str, Any], text: str) -> None:
    """Make typed words the current query; clearing the box drops a text query."""
    if not text.strip():
        query = state.get(QUERY)
        if query is not None and query.is_text:
            state.pop(QUERY, None)
            state.pop(OPENED, None)
        return
    state[QUERY] = Query(label=text, text=text)
    state.pop(MESSAGE, None)
    state.pop(OPENED, None)


def embedded(
    state: MutableMapping[str, Any], query: Query, vector: np.ndarray, preview: bytes | None
) -> Query:
    """Remember an upload's or text's query vector so reruns (new k, filters) do not
    re-encode it."""
    done = replace(query, data=None, vector=vector, preview=preview)
    state[QUERY] = done
    return done


def refuse(state: MutableMapping[str, Any], message: str) -> None:
    """Drop the current query and keep why (a corrupt or oversized picture)."""
    state.pop(QUERY, None)
    state.pop(OPENED, None)
    state[MESSAGE] = message


def take_scripted_upload(state: MutableMapping[str, Any], limit_mb: float) -> None:
    """Route bytes put in session_state by a test or script through the same upload path."""
    data = state.pop(SCRIPTED_UPLOAD, None)
    if data is not None:
        accept_upload(state, str(state.pop("upload_name", "upload")), data, limit_mb)
