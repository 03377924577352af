"""A real browser against `index serve`: upload cat.jpg, see it first; see the bee.jpg group."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import PHOTOS, TINY_BIRDER

from indexer.build import build
from indexer.settings import Settings

CHROMIUM = "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, tiny_encoder):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    shutil.copytree(PHOTOS, tmp_path / "photos")
    index = tmp_path / "index"
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build([tmp_path / "photos"], settings, encoder=tiny_encoder)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "serve", "--index", str(index), "--port", str(port)]
        + ["--weights", str(TINY_BIRDER), "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("index serve did not start")
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_upload_and_duplicates_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    args += ["--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server, wait_until="domcontentloaded")
        page.locator("input[type=file]").set_input_files(str(PHOTOS / "flat" / "cat.jpg"))
        first = page.locator("[data-testid='stMarkdownContainer']", has_text="#1 ·").first
        first.wait_for(timeout=60_000)
        assert "cat.jpg" in first.inner_text() and "1.0000" in first.inner_text()
        page.wait_for_timeout(1500)  # let the thumbnails paint
        page.screenshot(path=str(OUTPUT / "search.png"), full_page=True)
        page.goto(server + "/Duplicates", wait_until="domcontentloaded")
        bee = page.locator("[data-testid='stCaptionContainer']", has_text="bee.jpg").first
        bee.wait_for(timeout=60_000)
        assert page.get_by_text("KEEP ·").count() >= 1
        page.wait_for_timeout(1500)
        page.screenshot(path=str(OUTPUT / "duplicates.png"), full_page=True)
        browser.close()
