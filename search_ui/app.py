"""The Streamlit app `index serve` runs: Search, Duplicates and Index pages in one navigation.

Each page is a thin face over the `indexer` library; this file only wires them together.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def icon() -> Image.Image:
    """The tab's icon, drawn here: a named Material icon would make the browser fetch it from
    fonts.gstatic.com, and a local photo tool makes no request outside the machine."""
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((2, 8, 50, 46), radius=6, outline=(49, 51, 63), width=5)
    draw.ellipse((26, 26, 52, 52), fill=(255, 255, 255), outline=(255, 75, 75), width=5)
    draw.line((48, 48, 61, 61), fill=(255, 75, 75), width=7)
    return img


def main() -> None:
    """Set up the page chrome and run the page the browser asked for.

    The checkout goes on sys.path so `streamlit run search_ui/app.py` works uninstalled too.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    st.set_page_config(page_title="photo-index", page_icon=icon(), layout="wide")
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
