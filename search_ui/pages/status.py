"""Index page: counts, encoder, FAISS type / nprobe / recall, last build, the failure ledger.

Everything comes from `indexer.verify.stats` (the `index stats --json` contract) and the catalog.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from indexer.files import human_size
from indexer.store import sync
from indexer.verify import stats
from search_ui.common import Loaded, open_index
from search_ui.text import code, md


def _when(path: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(" ", "seconds")
    except OSError:
        return "—"


def overview(loaded: Loaded, info: dict[str, Any]) -> None:
    """Counts and the FAISS parameters in one glance."""
    a, b, c, d = st.columns(4)
    a.metric("Images", info["images"])
    b.metric("Vectors", info["vectors"])
    c.metric("Failures", info["failures"])
    recall = info["recall_at_10"]
    d.metric("Recall@10", "—" if recall is None else f"{recall:.3f}")
    ms = info.get("search_ms")
    st.markdown(
        f"**FAISS** {md(info['index_type'] or '—')} · nlist {info['nlist'] or '—'} · "
        f"nprobe {info['nprobe'] or '—'} · {'—' if ms is None else f'{ms:.3f}'} ms/query · "
        f"saved {_when(sync.index_path(loaded.settings.index))}"
    )
    disk = info.get("disk_bytes") or {}
    st.markdown(
        f"**Folder** {code(info['index'])} · {human_size(disk.get('total'))} on disk"
        + ("" if not loaded.settings.weights else f" · weights {code(loaded.settings.weights)}")
    )


def details(info: dict[str, Any], last_build: dict[str, Any] | None) -> None:
    """The encoder identity the index is pinned to and what the last build did."""
    left, right = st.columns(2)
    with left:
        st.subheader("Encoder")
        encoder = info["encoder"] or {}
        st.markdown(f"{code(encoder.get('architecture', '—'))} · {encoder.get('dim', '—')}-d")
        st.json(encoder, expanded=False)
    with right:
        st.subheader("Last build")
        if not last_build:
            st.write("No finished build recorded.")
            return
        done = ("new", "changed", "moved", "deleted", "unchanged", "failed", "embedded")
        st.markdown(" · ".join(f"{last_build.get(k, 0)} {k}" for k in done))
        st.markdown(
            f"{last_build.get('seconds', 0):.1f} s · "
            f"{last_build.get('images_per_second', 0):.1f} images/s · "
            f"{last_build.get('images', 0)} images, {last_build.get('vectors', 0)} vectors"
        )
        st.json(last_build, expanded=False)


def ledger(loaded: Loaded) -> None:
    """The failure ledger, searchable by path, stage or reason."""
    rows = loaded.searcher.catalog.failures()
    st.subheader(f"Failure ledger ({len(rows)})")
    needle = st.text_input("Search the ledger (path, stage or reason)", key="ledger").lower()
    shown = [
        {
            "path": r["path"],
            "stage": r["stage"],
            "reason": r["reason"],
            "attempts": r["attempts"],
            "last seen": dt.datetime.fromtimestamp(r["last_seen"]).isoformat(" ", "seconds"),
        }
        for r in rows
        if needle in f"{r['path']} {r['stage']} {r['reason']}".lower()
    ]
    if rows and not shown:
        st.write("No failure matches.")
    elif shown:
        st.dataframe(shown, width="stretch", hide_index=True)
    else:
        st.write("No file failed to index.")


def main() -> None:
    """The Index page: overview, encoder and last build, then the failure ledger.

    Read fresh on every run, so a build that just finished shows at once.
    """
    st.title("Index")
    opened = open_index()
    if opened is None:
        return
    loaded, _view = opened
    info = stats(loaded.settings)
    overview(loaded, info)
    details(info, loaded.searcher.catalog.get_meta("last_build"))
    ledger(loaded)


main()
