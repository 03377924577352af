"""The Streamlit app `index serve` runs: Search, Duplicates and Index pages in one navigation.

Each page is a thin face over the `indexer` library; this file only wires them together.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Set up the page chrome and run the page the browser asked for.

    The checkout goes on sys.path so `streamlit run search_ui/app.py` works uninstalled too.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    st.set_page_config(page_title="photo-index", page_icon=":material/image_search:", layout="wide")
    pages = [
        st.Page(
            "pages/search.py",
            title="Search",
            icon=":material/image_search:",
            url_path="search",
            default=True,
        ),
        st.Page(
            "pages/duplicates.py",
            title="Duplicates",
            icon=":material/content_copy:",
            url_path="duplicates",
        ),
        st.Page("pages/status.py", title="Index", icon=":material/analytics:", url_path="index"),
    ]
    st.navigation(pages).run()


main()
