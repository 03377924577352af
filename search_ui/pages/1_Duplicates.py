"""Duplicates page: tiers and groups from `indexer.dedup`, kept file marked, reports to download."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from indexer.dedup import TIERS, DedupOptions, dedup  # noqa: E402
from search_ui.common import describe, open_catalog, settings, thumb  # noqa: E402


@st.cache_data(show_spinner="Finding duplicates…", max_entries=8)
def _report(index: str, generation: int, hamming: int, near: float, similar: float | None):
    """The dedup report for these thresholds; recomputed when the catalog changes."""
    options = DedupOptions(hamming=hamming, near_duplicate=near, similar=similar)
    return dedup(index, options)


def main() -> None:
    st.set_page_config(page_title="photo-index · duplicates", layout="wide")
    st.title("Duplicates")
    cat = open_catalog()
    if cat is None:
        return
    with st.sidebar:
        hamming = st.slider("Near-identical: max pHash distance (bits)", 0, 20, 10)
        near = st.slider("Near-duplicate: min CLIP cosine", 0.80, 1.0, 0.95, 0.005)
        use_similar = st.checkbox("Show the 'similar' tier (bursts, series)")
        similar = (
            st.slider("Similar: min CLIP cosine", 0.5, 0.95, 0.85, 0.01) if use_similar else None
        )
    report = _report(str(settings().index), cat.generation(), hamming, near, similar)
    ids = {r["path"]: r["content_id"] for r in cat.records()}
    data = report.as_dict()
    counts = " · ".join(f"{n} {t}" for t, n in data["counts"].items())
    st.write(f"{len(report.groups)} groups: {counts}")
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Report (JSON)", report.render("json"), "duplicates.json")
    c2.download_button("Report (CSV)", report.render("csv"), "duplicates.csv")
    c3.download_button("Report (HTML)", report.render("html"), "duplicates.html")
    c4.download_button("Quarantine script", report.quarantine_script(), "quarantine.py")
    tabs = st.tabs([t for t in TIERS if t != "similar" or similar is not None])
    for tab, tier in zip(tabs, TIERS, strict=False):
        with tab:
            groups = [g for g in report.groups if g.tier == tier]
            if not groups:
                st.write(f"No {tier} groups at these thresholds.")
            for g in groups:
                with st.container(border=True):
                    st.markdown(
                        f"**{tier} group {g.id}** · {len(g.members)} files · similarity "
                        f"{g.min_score:.4f}–{g.max_score:.4f} · keep `{os.path.basename(g.keep)}`"
                        f" — {g.reason}"
                    )
                    cols = st.columns(min(len(g.members), 6))
                    for i, m in enumerate(g.members):
                        with cols[i % len(cols)]:
                            data = thumb(cat, ids[m["path"]]) if m["path"] in ids else None
                            if data:
                                st.image(data, width="stretch")
                            mark = "**KEEP** · " if m["path"] == g.keep else ""
                            st.caption(f"{mark}{m['score']:.4f} · {describe(m)}")


main()
