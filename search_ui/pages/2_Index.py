"""Index page: counts, encoder, FAISS parameters, last build and the searchable failure ledger."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from indexer.verify import stats  # noqa: E402
from search_ui.common import open_catalog, settings  # noqa: E402


def main() -> None:
    st.set_page_config(page_title="photo-index · index", layout="wide")
    st.title("Index")
    cat = open_catalog()
    if cat is None:
        return
    info = stats(settings())
    a, b, c, d = st.columns(4)
    a.metric("Images", info["images"])
    b.metric("Vectors", info["vectors"])
    c.metric("Failures", info["failures"])
    recall = info["recall_at_10"]
    d.metric("Recall@10", "—" if recall is None else f"{recall:.3f}")
    st.markdown(
        f"**FAISS** {info['index_type']} · nlist {info['nlist'] or '—'} · nprobe "
        f"{info['nprobe'] or '—'} · {info['search_ms'] or 0:.3f} ms/query · folder "
        f"`{info['index']}`"
    )
    st.markdown("**Encoder**")
    st.json(info["encoder"] or {}, expanded=False)
    st.markdown("**Last build**")
    st.json(info["last_build"] or {}, expanded=False)
    st.subheader("Failure ledger")
    needle = st.text_input("Search the ledger (path or reason)")
    rows = [
        r
        for r in cat.failures()
        if not needle or needle.lower() in (r["path"] + " " + r["reason"]).lower()
    ]
    st.dataframe(
        [{k: r[k] for k in ("path", "stage", "reason", "attempts")} for r in rows],
        width="stretch",
    )


main()
