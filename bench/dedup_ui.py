"""Review at scale: the Duplicates page and the HTML report with 1k, 10k and 100k groups.

For each size, a catalog is filled directly (no encoder; rows inserted in bulk): 90 % exact
groups of 2–3 files, 10 % near-identical pairs (pHash 2 bits apart), spread over 100 folders.
The files are not on disk; the thumbnail cache of the groups the page visits is filled from
real thumbnails of tests/fixtures/photos, and the report's inlined thumbnails are distinct
JPEGs (so their size is honest). Then it times:
  dedup()        the library call the page caches (grouping + keep rule);
  page first     the Duplicates page's first run in a fresh session (AppTest, in process:
                 opens the index, runs dedup, renders the summary and page 1);
  page change    a later run that shows another page (median of 4), and a tier filter change;
  HTML write     `Report.write("r.html")`: thumbnails of the first 2,000 groups + data block;
  browser        (--browser) headless chromium opens the file → first page drawn; next page.

    python bench/dedup_ui.py                          # 1k, 10k, 100k groups
    python bench/dedup_ui.py --sizes 50 --out t.md    # the smoke test's size
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHOTOS = ROOT / "tests" / "fixtures" / "photos" / "flat"
APP = str(ROOT / "search_ui" / "app.py")
DUPLICATES = "pages/duplicates.py"
SAMPLES = ["cat.jpg", "cake.jpg", "bee.jpg", "books.jpg", "camera.jpg", "tree.webp"]


def fill(index: Path, groups: int) -> None:
    """A catalog with `groups` duplicate groups: rows only, inserted in bulk."""
    import numpy as np
    from sqlalchemy import insert

    from indexer.store.catalog import Catalog, Content, File

    rng = np.random.default_rng(14)
    contents, files = [], []
    pairs = groups // 10
    for g in range(groups):
        folder = f"/bench/photos/{g % 100:02d}"
        cid = len(contents) + 1
        if g < groups - pairs:  # exact: one content, 2–3 files
            contents.append(_content(cid, 2_000_000 + g, None))
            for copy in range(2 + g % 2):
                name = f"IMG_{g}.jpg" if copy == 0 else f"IMG_{g} ({copy}).jpg"
                files.append(_file(f"{folder}/{name}", cid, 2_000_000 + g))
        else:  # near-identical: two contents, pHash 2 bits apart
            base = int(rng.integers(-(2**63), 2**63 - 1))
            for k, phash in enumerate((base, base ^ 0b101)):
                contents.append(_content(cid + k, 1_000_000 + g + k, phash))
                files.append(_file(f"{folder}/edit_{g}_{k}.jpg", cid + k, 1_000_000 + g + k))
    cat = Catalog(index)
    with cat.session() as s:
        s.execute(insert(Content), contents)
        s.execute(insert(File), files)
    cat.close()


def _content(cid: int, size: int, phash: int | None) -> dict:
    return {"id": cid, "hash": f"{cid:064x}", "size": size, "width": 4000, "height": 3000,
            "format": "JPEG", "taken_at": "2024-05-01", "phash": phash}  # fmt: skip


def _file(path: str, cid: int, size: int) -> dict:
    return {"path": path, "content_id": cid, "size": size, "mtime_ns": cid, "indexed_at": 0.0}


def warm_thumbnails(index: Path, report, pages: int, size: int = 256) -> None:
    """The page's thumbnail cache for the groups of its first `pages` pages (of up to 50)."""
    from indexer.thumbs import jpeg_thumbnail, thumbnail_path

    samples = [jpeg_thumbnail(PHOTOS / name, size) for name in SAMPLES]
    for n, group in enumerate(report.groups[: pages * 50]):
        for m in group.members:
            path = thumbnail_path(index, f"{report.content_ids[m['path']]:064x}", size)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(samples[n % len(samples)])


def report_thumbnails(index: Path, report, groups: int) -> None:
    """Distinct 200 px JPEGs for the contents of the first `groups` groups (the HTML inlines)."""
    from PIL import Image, ImageDraw

    from indexer.dedup.report import THUMB_SIZE
    from indexer.thumbs import thumbnail_path

    bases = [Image.open(PHOTOS / name).convert("RGB") for name in SAMPLES]
    for img in bases:
        img.thumbnail((THUMB_SIZE, THUMB_SIZE))
    for n, group in enumerate(report.groups[:groups]):
        for m in group.members:
            cid = report.content_ids[m["path"]]
            path = thumbnail_path(index, f"{cid:064x}", THUMB_SIZE)
            if path.exists():
                continue
            img = bases[n % len(bases)].copy()
            ImageDraw.Draw(img).text((4, 4), str(cid), fill=(255, 255, 0))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.getvalue())


def time_page(index: Path) -> dict[str, float]:
    """Duplicates page: first run in a fresh session, page changes, a tier filter change (ms)."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(PHOTO_INDEX_INDEX=str(index), PHOTO_INDEX_DEVICE="cpu")
    at = AppTest.from_file(APP, default_timeout=1800)
    at.switch_page(DUPLICATES)
    start = time.perf_counter()
    at.run()
    first = (time.perf_counter() - start) * 1000
    assert not at.exception, at.exception
    changes = []
    for number in (2, 3, 2, 3):
        start = time.perf_counter()
        at.number_input(key="page").set_value(number).run()
        changes.append((time.perf_counter() - start) * 1000)
        assert not at.exception and at.number_input(key="page").value == number
    start = time.perf_counter()
    at.selectbox(key="dup_tier").select("near-identical").run()
    tier = (time.perf_counter() - start) * 1000
    assert not at.exception
    return {"first": first, "change": statistics.median(changes), "tier": tier}


def time_browser(html: Path) -> tuple[float, float]:
    """Chromium opens the report from disk → first page drawn; Next → second page drawn (ms)."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=args)
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(html.as_uri(), timeout=600_000)
        page.wait_for_selector("section.group", timeout=600_000)
        opened = (time.perf_counter() - start) * 1000
        first = page.locator("section.group").first.get_attribute("id")
        start = time.perf_counter()
        page.click("#next")
        page.wait_for_function("id => document.querySelector('section.group').id !== id", arg=first)
        nxt = (time.perf_counter() - start) * 1000
        browser.close()
    return opened, nxt


def measure(groups: int, tmp: Path, browser: bool) -> dict[str, float]:
    """Fill, then time dedup(), the page and the HTML report at one size."""
    from indexer.dedup import dedup
    from indexer.dedup.report import THUMB_GROUPS

    index = tmp / f"index-{groups}"
    start = time.perf_counter()
    fill(index, groups)
    row: dict[str, float] = {"groups": groups, "fill_s": time.perf_counter() - start}
    start = time.perf_counter()
    report = dedup(index)
    row["dedup_ms"] = (time.perf_counter() - start) * 1000
    # random pHashes: at 100k, a couple of pairs land within 10 bits of another and merge
    assert len(report.groups) >= groups * 0.999, len(report.groups)
    warm_thumbnails(index, report, pages=3)
    report_thumbnails(index, report, THUMB_GROUPS)
    row.update(time_page(index))
    html = tmp / f"r-{groups}.html"
    start = time.perf_counter()
    report.write(html)
    row["html_s"] = time.perf_counter() - start
    row["html_mb"] = html.stat().st_size / 1e6
    if browser:
        row["open_ms"], row["next_ms"] = time_browser(html)
    return row


def table(rows: list[dict[str, float]], browser: bool) -> str:
    head = "| groups | files | dedup() ms | page first render ms | page change ms | tier filter ms "
    head += "| HTML write s | HTML MB |"
    rule = "|---:|---:|---:|---:|---:|---:|---:|---:|"
    if browser:
        head += " browser open → page 1 ms | browser next page ms |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in rows:
        files = r["groups"] // 10 * 2 + sum(
            2 + g % 2 for g in range(r["groups"] - r["groups"] // 10)
        )
        line = (
            f"| {r['groups']:,} | {files:,} | {r['dedup_ms']:,.0f} | {r['first']:,.0f} | "
            f"{r['change']:,.0f} | {r['tier']:,.0f} | {r['html_s']:.2f} | {r['html_mb']:.1f} |"
        )
        if browser:
            line += f" {r['open_ms']:,.0f} | {r['next_ms']:,.0f} |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="group counts, comma-separated"
    )
    parser.add_argument("--browser", action="store_true", help="also time chromium on the report")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for groups in sizes:
            rows.append(measure(groups, Path(tmp), args.browser))
            print(f"{groups:,} groups done ({rows[-1]['fill_s']:.1f} s to fill)", flush=True)
    text = (
        f"Duplicates page and HTML report at scale · {platform.processor() or platform.machine()},"
        f" {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} · page = 20 groups, "
        "thumbnails cached · HTML thumbnails for the first 2,000 groups\n\n"
        + table(rows, args.browser)
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
