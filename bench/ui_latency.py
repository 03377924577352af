"""Query latency of the search page, upload → results shown (prints a markdown table).

Builds an index of tests/fixtures/photos with the given weights, then times, over repeated queries:
  library   `Searcher.search_image` (decode + encode + FAISS + catalog join), encoder warm;
  page      one Streamlit run of the search page with the upload (AppTest, in process;
            thumbnails cached after the first query), i.e. everything the server does;
  browser   (--browser) `index serve` + headless chromium: set the file on the uploader →
            the result card of that picture is on screen (websocket round trip, rendering).

    python bench/ui_latency.py                                   # tiny weights, CPU
    python bench/ui_latency.py --weights random-vit-l --device cuda --browser
    python bench/ui_latency.py --weights VIT_L.safetensors --device cuda --out results.md

`--weights random-vit-l` writes random ViT-L/14 weights (latency does not depend on values).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
PHOTOS = FIXTURES / "photos"
TINY = FIXTURES / "clip-vit-tiny" / "tiny_birder.pt"
APP = str(Path(__file__).resolve().parents[1] / "search_ui" / "app.py")
CHROMIUM = "/usr/bin/chromium"
# Distinct pictures (no byte-identical copy under another name): the top hit is the query.
QUERIES = ["cat.jpg", "cake.jpg", "books.jpg", "camera.jpg", "tree.webp", "duck.jp2"]


def summary(values: list[float]) -> str:
    """Median, p90 and max in ms for one table row."""
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f"{statistics.median(values):8.1f} | {p90:8.1f} | {max(values):8.1f}"


def time_library(settings, repeats: int) -> list[float]:
    """`Searcher.search_image` on raw upload bytes, encoder and index already loaded."""
    from indexer.search import Searcher

    searcher = Searcher(settings)
    queries = [(PHOTOS / "flat" / q).read_bytes() for q in QUERIES]
    searcher.search_image(queries[0], k=12)  # load the encoder and the index
    out = []
    for i in range(repeats):
        start = time.perf_counter()
        searcher.search_image(queries[i % len(queries)], k=12)
        out.append((time.perf_counter() - start) * 1000)
    searcher.close()
    return out


def time_page(settings, repeats: int) -> list[float]:
    """One full run of the search page script per upload (AppTest), after one warm-up run.

    The same AppTest session is rerun with each new upload, as a browser session would be.
    """
    from streamlit.testing.v1 import AppTest

    os.environ.update(
        PHOTO_INDEX_INDEX=str(settings.index),
        PHOTO_INDEX_WEIGHTS=str(settings.weights),
        PHOTO_INDEX_DEVICE=settings.device,
    )
    out = []
    at = AppTest.from_file(APP, default_timeout=300)  # one session: setup is AppTest's cost
    for i in range(repeats + 1):
        name = QUERIES[i % len(QUERIES)]
        at.session_state["upload_bytes"] = (PHOTOS / "flat" / name).read_bytes()
        start = time.perf_counter()
        at.run()
        elapsed = (time.perf_counter() - start) * 1000
        first = next((m.value for m in at.markdown if m.value.startswith("**#1**")), "")
        assert not at.exception and name in first, (at.exception, first)
        if i:  # the first run loads the encoder and makes the thumbnails
            out.append(elapsed)
    return out


def time_browser(settings, repeats: int) -> list[float]:
    """`index serve` + headless chromium: file set on the uploader → its result card shown."""
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "indexer.cli", "serve", "--index", str(settings.index)]
    cmd += ["--port", str(port), "--weights", str(settings.weights), "--device", settings.device]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    out = []
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        args += ["--disable-component-update", "--disable-sync", "--no-first-run"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            expect.set_options(timeout=300_000)
            page.goto(url, wait_until="domcontentloaded")
            uploader = page.locator("input[type=file]")
            expect(uploader).to_be_attached()
            for i in range(repeats + 1):
                name = QUERIES[i % len(QUERIES)]
                start = time.perf_counter()
                uploader.set_input_files(str(PHOTOS / "flat" / name))
                page.wait_for_function(  # checked every frame, not on expect's backoff
                    "t => document.querySelector('.st-key-hit-1')?.innerText.includes(t)",
                    arg=f"1.0000 · {name}",
                    polling="raf",
                    timeout=300_000,
                )
                if i:  # the first query loads the encoder in the server
                    out.append((time.perf_counter() - start) * 1000)
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return out


def main() -> None:
    """Build the index, time each path, print (and optionally write) the table.

    One temporary index per run, so the figures never depend on an earlier state.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default=str(TINY), help="checkpoint, or random-vit-l")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--browser", action="store_true", help="also time a real browser")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:  # the browser path's server inherits it through the environment
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    from indexer.build import build
    from indexer.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        label = Path(weights).name
        if weights == "random-vit-l":
            from indexer.encoder import save_random_checkpoint

            weights = str(save_random_checkpoint(Path(tmp) / "vit_l14_random.safetensors"))
            label = "ViT-L/14 (random weights)"
        settings = Settings.from_env(
            env={}, index=Path(tmp) / "index", weights=weights, device=args.device
        )
        started = time.perf_counter()
        built = build([PHOTOS], settings)
        build_s = time.perf_counter() - started
        rows = [
            ("library search_image", time_library(settings, args.repeats)),
            ("search page run (AppTest)", time_page(settings, args.repeats)),
        ]
        if args.browser:
            rows.append(("browser upload → grid", time_browser(settings, args.repeats)))
    lines = [
        f"UI query latency · weights {label} · device {args.device} · "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads or 'default'} torch threads, load {os.getloadavg()[0]:.1f} · "
        f"{built.images} images (built in {build_s:.1f} s) · k=12 · {args.repeats} queries",
        "",
        "| path | median ms | p90 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {summary(values)} |" for name, values in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
