"""A real browser against `index serve`: upload cat.jpg, see it first; see the bee.jpg group.

Playwright drives Debian's chromium (no browser download); screenshots go to test-output/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CORPUS_COPY_GROUPS, PHOTOS, TINY_BIRDER, free_port

from indexer.build import build
from indexer.files import human_size
from indexer.settings import Settings

CHROMIUM = "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.browser


def stop(proc: subprocess.Popen) -> None:
    """Stop `index serve` and the Streamlit process it started (one process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@pytest.fixture
def server(tmp_path, tiny_encoder):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    shutil.copytree(PHOTOS, tmp_path / "photos")
    flat = tmp_path / "photos" / "flat"  # two files that claim to be pictures and are not
    (flat / "not-an-image.jpg").write_bytes((flat / "not-an-image.txt").read_bytes())
    (flat / "broken.jpg").write_bytes((flat / "cat.jpg").read_bytes()[:2000])
    index = tmp_path / "index"
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build([tmp_path / "photos"], settings, encoder=tiny_encoder)
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "serve", "--index", str(index)]
        + ["--port", str(port), "--weights", str(TINY_BIRDER), "--device", "cpu"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    output = (tmp_path / "serve.log").read_text()
                    pytest.fail(f"index serve did not start:\n{output}")
                time.sleep(0.3)
        yield url
    finally:
        stop(proc)
        log.close()


def test_upload_and_duplicates_in_a_real_browser(server):
    from playwright.sync_api import expect, sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(30_000)
            expect.set_options(timeout=30_000)  # the first query loads the encoder
            requested: list[str] = []  # a local photo tool asks no other host for anything
            page.on("request", lambda r: requested.append(r.url))
            page.goto(server, wait_until="domcontentloaded")
            page.locator("input[type=file]").set_input_files(str(PHOTOS / "flat" / "cat.jpg"))
            first = page.locator(".st-key-hit-1")
            expect(first).to_contain_text("#1 · 1.0000 · cat.jpg")
            expect(page.locator(".st-key-hit-12")).to_be_visible()  # default k = 12
            expect(first.locator("img")).to_be_visible()  # the cached thumbnail
            page.wait_for_function(  # every thumbnail in the grid has painted
                "[...document.querySelectorAll('.st-key-results img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            page.screenshot(path=str(OUTPUT / "search.png"), full_page=True)

            first.get_by_role("button", name="Open").click()
            expect(page.locator(".st-key-opened")).to_contain_text("Dimensions: 384×256")
            page.screenshot(path=str(OUTPUT / "opened.png"))

            page.get_by_role("link", name="Duplicates").click()
            group = page.locator(".st-key-group-1")
            expect(group).to_contain_text("exact group 1 · copies · 3 files")
            expect(group).to_contain_text("keep bee.jpg")
            expect(group.get_by_text("KEEP", exact=True)).to_have_count(1)
            expect(group.locator("img")).to_have_count(3)
            page.wait_for_timeout(500)
            page.screenshot(path=str(OUTPUT / "duplicates.png"), full_page=True)
            exports = {}
            for label in ("Report (JSON)", "Report (HTML)", "Quarantine script"):
                with page.expect_download() as download:
                    page.get_by_role("button", name=label).click()
                exports[download.value.suggested_filename] = Path(download.value.path())
            report = json.loads(exports["duplicates.json"].read_text())
            assert sum(g["tier"] == "exact" for g in report["groups"]) == CORPUS_COPY_GROUPS
            assert "bee.jpg" in exports["duplicates.html"].read_text()
            assert "--apply" in exports["quarantine.py"].read_text()

            page.set_viewport_size({"width": 1400, "height": 1500})  # the ledger too
            page.get_by_role("link", name="Index").click()
            expect(page.get_by_text("Failure ledger (2)")).to_be_visible()
            expect(page.get_by_test_id("stMetricValue").first).to_have_text("38")
            expect(page.get_by_test_id("stDataFrame")).to_be_visible()
            page.wait_for_timeout(500)
            page.screenshot(path=str(OUTPUT / "index.png"), full_page=True)
            elsewhere = [u for u in requested if not u.startswith((server + "/", "data:", "blob:"))]
            assert elsewhere == []
        finally:
            browser.close()


def member_path(member) -> str:
    """The path a member card shows: its caption's folder and its name."""
    name = member.locator("code").first.inner_text()
    folder = member.get_by_test_id("stCaptionContainer").inner_text().split(" · ")[1]
    return os.path.join(folder, name)


def test_two_quick_keep_clicks_land_on_the_files_clicked(server, tmp_path):
    """ "Keep this" on a copy in group 1, then at once on a copy in group 2 (the first click's
    rerun still running): each decision names the file that was clicked, nothing else."""
    from playwright.sync_api import expect, sync_playwright

    from indexer.dedup import decisions

    settings = Settings.from_env(env={}, index=tmp_path / "index")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(30_000)
            expect.set_options(timeout=30_000)
            page.goto(server + "/duplicates", wait_until="domcontentloaded")
            expect(page.locator(".st-key-group-2")).to_be_visible()
            clicked, buttons = [], []
            for n in (1, 2):
                copy = page.locator(f".st-key-group-{n} [class*='st-key-member-']").nth(1)
                clicked.append(member_path(copy))
                buttons.append(copy.get_by_role("button", name="Keep this"))
            buttons[0].click()
            buttons[1].click(timeout=15_000)  # at once: no wait for the first click's rerun
            deadline = time.time() + 30
            while len(decisions.list_(settings)) < 2 and time.time() < deadline:
                time.sleep(0.2)
            made = decisions.list_(settings)
            assert sorted(p for d in made for p in d["decided_paths"]) == sorted(clicked)
            assert all(d["kind"] == "keep" for d in made)
            expect(page.locator(".st-key-group-1")).to_contain_text("resolved")
            page.screenshot(path=str(OUTPUT / "duplicates-decided.png"), full_page=True)
        finally:
            browser.close()


def big_report(lib: Path):
    """500 groups (450 exact pairs, 50 near-identical) over symlinks to real photos, 5 folders;
    one member's name is HTML that would run if the page parsed names as markup."""
    from indexer.dedup import Group, Report

    pictures = ["cat.jpg", "cake.jpg", "bee.jpg", "books.jpg", "camera.jpg", "tree.webp"]
    groups = []
    for g in range(500):
        folder = lib / f"f{g % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"IMG_{g}.jpg", f"IMG_{g} (1).jpg" if g else "<img src=x onerror=alert(1)>.jpg"]
        members = []
        for n, name in enumerate(names):
            (folder / name).symlink_to(PHOTOS / "flat" / pictures[g % len(pictures)])
            members.append({"path": str(folder / name), "size": 1000 + n, "width": 384,
                            "height": 256, "format": "JPEG", "taken_at": None,
                            "score": 1.0, "protected": False})  # fmt: skip
        tier = "exact" if g < 450 else "near-identical"
        groups.append(Group(g + 1, tier, members, members[0]["path"], "largest file", 1.0, 1.0, 1))
    return Report(groups, {"hamming": 10, "near_duplicate": 0.95, "similar": None}, "/i", "now")


def test_html_report_of_500_groups_pages_filters_and_opens_from_disk(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from playwright.sync_api import expect, sync_playwright

    from indexer.dedup.gallery import to_html

    report = big_report(tmp_path / "lib")
    html = tmp_path / "report.html"
    html.write_text(to_html(report.as_dict(), report.thumbnails(100), thumb_groups=100))
    text = html.read_text()
    assert "<script type='application/json' id='report-data'>" in text and "<img" not in text
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            seen, problems = [], []
            page.on("request", lambda r: seen.append(r.url))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: problems.append(d.message))
            page.goto(html.as_uri())
            groups = page.locator("section.group")
            expect(groups).to_have_count(20)
            expect(page.locator("#pages")).to_have_text("of 25 (500 groups)")
            summary = page.locator("table.summary tr[data-tier='exact']")
            reclaim = human_size(450 * 1001)  # the non-kept copy of each exact pair
            expect(summary).to_have_text(f"exactidentical bytes450900450{reclaim}0")  # 0 edits
            page.wait_for_function(  # every thumbnail of the page has painted
                "[...document.querySelectorAll('section.group img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            expect(groups.locator("img")).to_have_count(40)
            expect(groups.first).to_contain_text("<img src=x onerror=alert(1)>.jpg")
            expect(groups.first.locator(".member.kept")).to_contain_text("KEEP")
            page.screenshot(path=str(OUTPUT / "report-500.png"))
            page.click("#next")
            expect(groups.first).to_have_attribute("id", "g21")
            page.fill("#page", "25")
            page.press("#page", "Enter")
            expect(groups.last).to_have_attribute("id", "g500")
            expect(groups.locator("img")).to_have_count(0)  # beyond the first 100 groups
            expect(groups.first).to_contain_text("no preview (see note)")
            expect(page.locator("p.note")).to_contain_text("first 100 groups")
            page.select_option("#tier", "near-identical")
            expect(page.locator("#pages")).to_have_text("of 3 (50 groups)")
            page.fill("#folder", str(tmp_path / "lib" / "f3"))
            page.press("#folder", "Enter")
            expect(page.locator("#pages")).to_have_text("of 1 (10 groups)")
            expect(groups.locator("code", has_text="/f3/")).to_have_count(30)  # keep line + 2
            page.select_option("#size", "50")
            page.select_option("#tier", "")
            expect(groups).to_have_count(50)
            assert not problems
            assert all(u.startswith(("file:", "data:")) for u in seen), seen
        finally:
            browser.close()
