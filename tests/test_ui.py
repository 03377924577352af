"""The Streamlit pages with AppTest: upload → results, filters, more-like-this, empty index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import PHOTOS, TINY_BIRDER
from streamlit.testing.v1 import AppTest

from indexer.build import build
from indexer.settings import Settings

APP = str(Path(__file__).resolve().parents[1] / "search_ui" / "app.py")
PAGES = Path(APP).parent / "pages"


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, tiny_encoder) -> Path:
    root = tmp_path_factory.mktemp("ui")
    shutil.copytree(PHOTOS, root / "photos")
    index = root / "index"
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build([root / "photos"], settings, encoder=tiny_encoder)
    return index


@pytest.fixture
def env(monkeypatch, built_index):
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(built_index))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    return built_index


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)


def test_upload_gives_the_picture_first(env):
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["upload_bytes"] = (PHOTOS / "flat" / "cat.jpg").read_bytes()
    at.run()
    assert not at.exception
    first = next(m.value for m in at.markdown if m.value.startswith("**#1**"))
    assert "1.0000" in first and "cat.jpg" in first
    assert len([m for m in at.markdown if m.value.startswith("**#")]) == 12  # default k


def test_filters_and_more_like_this(env, built_index):
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["upload_bytes"] = (PHOTOS / "flat" / "cat.jpg").read_bytes()
    at.run()
    nested = str(built_index.parent / "photos" / "nested" / "cats")
    at.sidebar.selectbox[0].select(nested).run()
    ranks = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert ranks and len(ranks) <= 5  # only the five pictures in nested/cats
    assert all("cat" in r or "kitty" in r for r in ranks)
    at.button(key="more-2").click().run()
    first = next(m.value for m in at.markdown if m.value.startswith("**#1**"))
    assert "1.0000" in first and "cat.jpg" not in first


def test_bad_and_oversized_uploads_get_messages(env, monkeypatch):
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["upload_bytes"] = b"this is not a picture"
    at.run()
    assert not at.exception
    assert "Cannot search with this image" in at.error[0].value
    monkeypatch.setenv("PHOTO_INDEX_MAX_UPLOAD_MB", "0.001")
    import importlib

    import search_ui.common

    importlib.reload(search_ui.common)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["upload_bytes"] = (PHOTOS / "flat" / "cat.jpg").read_bytes()
    at.run()
    monkeypatch.delenv("PHOTO_INDEX_MAX_UPLOAD_MB")
    importlib.reload(search_ui.common)
    assert "uploads are limited" in at.error[0].value


def test_missing_index_says_how_to_build(monkeypatch, tmp_path):
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(tmp_path / "nothing"))
    for script in (APP, str(PAGES / "1_Duplicates.py"), str(PAGES / "2_Index.py")):
        at = AppTest.from_file(script, default_timeout=60).run()
        assert not at.exception
        assert "index build" in at.info[0].value


def test_duplicates_and_index_pages(env):
    at = AppTest.from_file(str(PAGES / "1_Duplicates.py"), default_timeout=60).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert sum("**KEEP**" in c for c in captions) >= 13
    assert any("bee.jpg" in c for c in captions)
    at = AppTest.from_file(str(PAGES / "2_Index.py"), default_timeout=60).run()
    assert not at.exception
    assert at.metric[0].value == "38"
    at.text_input[0].input("not-an-image").run()
    assert len(at.dataframe[0].value) == 1
