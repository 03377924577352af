"""Shared test fixtures: the real photo corpus and the tiny CLIP checkpoints in tests/fixtures/."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
PHOTOS = FIXTURE_DIR / "photos"
FIXTURES = FIXTURE_DIR / "clip-vit-tiny"
TINY_BIRDER = FIXTURES / "tiny_birder.pt"
TINY_OPEN_CLIP = FIXTURES / "tiny_open_clip.safetensors"
TINY_HF = FIXTURES / "tiny_hf"


@pytest.fixture(scope="session")
def tiny_encoder():
    """The tiny random-weight encoder (Birder layout), loaded once per test session."""
    from indexer.encoder import load_encoder

    return load_encoder(TINY_BIRDER, device="cpu")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A private, writable copy of tests/fixtures/photos (tests rename, edit and delete in it)."""
    dest = tmp_path / "photos"
    shutil.copytree(PHOTOS, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    dest.chmod(0o755)
    return dest


@pytest.fixture
def settings(tmp_path: Path):
    """Settings for a fresh index in tmp with the tiny weights, 1 decode worker."""
    from indexer.settings import Settings

    return Settings.from_env(
        env={}, index=tmp_path / "index", weights=str(TINY_BIRDER), workers=1, batch_size=8
    )


class Gallery(HTMLParser):
    """What a browser would load: the report's JSON data block, and any external asset."""

    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.summary: list[list[str]] = []
        self._in_data = False
        self._text = ""
        self.data: dict = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" or (tag == "script" and a.get("src")) or tag == "img":
            self.external.append(tag)  # nothing outside the file, no eager <img> in the DOM
        self._in_data = tag == "script" and a.get("id") == "report-data"
        if tag == "tr":
            self.summary.append([])

    def handle_data(self, data):
        if self._in_data:
            self.data = json.loads(data)
        elif self.lasttag in ("th", "td") and self.summary:
            self.summary[-1].append(data)

    def handle_endtag(self, tag):
        self._in_data = False
