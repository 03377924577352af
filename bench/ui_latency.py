"""Query latency of the search page, upload → results rendered (prints a table).

Builds an index of ../shared/photos, then times (a) the library call (decode + encode + FAISS +
catalog join) and (b) a full Streamlit script run of the search page with the upload (AppTest,
thumbnails cached after the first query), both over repeated queries.

    python bench/ui_latency.py                        # tiny weights, CPU
    python bench/ui_latency.py --weights VIT_L.pt --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
APP = str(Path(__file__).resolve().parents[1] / "search_ui" / "app.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=str(SHARED / "fixtures/clip-vit-tiny/tiny_birder.pt"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    from indexer.build import build
    from indexer.search import Searcher
    from indexer.settings import Settings

    query = (SHARED / "photos/flat/cat.jpg").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            env={}, index=Path(tmp) / "index", weights=args.weights, device=args.device
        )
        build([SHARED / "photos"], settings)
        searcher = Searcher(settings)
        searcher.search_image(query)  # load encoder + index
        lib = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            searcher.search_image(query, k=12)
            lib.append((time.perf_counter() - start) * 1000)
        os.environ.update(
            PHOTO_INDEX_INDEX=str(settings.index),
            PHOTO_INDEX_WEIGHTS=args.weights,
            PHOTO_INDEX_DEVICE=args.device,
        )
        page = []
        for i in range(args.repeats + 1):
            at = AppTest.from_file(APP, default_timeout=120)
            at.session_state["upload_bytes"] = query
            start = time.perf_counter()
            at.run()
            if i:  # the first run loads the encoder and makes thumbnails
                page.append((time.perf_counter() - start) * 1000)
            assert not at.exception and any(m.value.startswith("**#1**") for m in at.markdown)
    print(f"weights {Path(args.weights).name}, device {args.device}, {args.repeats} queries, k=12")
    for name, values in (("library search_image", lib), ("search page upload→grid", page)):
        print(f"{name:<24} median {statistics.median(values):7.1f} ms  max {max(values):7.1f} ms")


if __name__ == "__main__":
    main()
