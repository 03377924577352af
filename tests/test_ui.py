"""The Streamlit pages with AppTest (real searches through the library on a tiny-weights index).

AppTest cannot drive `st.file_uploader`, so uploads go in as `session_state["upload_bytes"]`,
which the search page routes through the same `search_ui.state.accept_upload` as the widget.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    APP,
    CORPUS_CONTENTS,
    CORPUS_COPY_GROUPS,
    CORPUS_PICTURES,
    PHOTOS,
    TINY_BIRDER,
    fill_from_files,
    pictures_in,
)
from PIL import Image
from streamlit import config
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from indexer.build import build
from indexer.files import human_size
from indexer.settings import Settings
from indexer.store.catalog import Catalog
from indexer.thumbs import thumbnail_bytes, thumbnail_path
from search_ui import state

DUPLICATES = "pages/duplicates.py"
STATUS = "pages/status.py"
CAT = (PHOTOS / "flat" / "cat.jpg").read_bytes()


def app(upload: bytes | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if upload is not None:
        at.session_state["upload_bytes"] = upload
    return at.run()


def ranks(at: AppTest) -> list[str]:
    """The result cards' title lines, best first."""
    return [m.value for m in at.markdown if m.value.startswith("**#")]


def names(at: AppTest) -> list[str]:
    return [r.rsplit("`", 2)[-2] for r in ranks(at)]


def test_upload_gives_the_picture_first(env):
    at = app(CAT)
    assert not at.exception and not at.error
    assert ranks(at)[0] == "**#1** · 1.0000 · `cat.jpg`"
    assert names(at).count("cat.jpg") == 1  # flat/ and nested/cats/: one picture, one card
    copies = next(c.value for c in at.caption if "copies]" in c.value)
    assert copies.startswith(":gray-badge[2 copies] also ") and "nested" in copies
    assert len(ranks(at)) == 12  # default k
    assert any(m.value == "**Query:** `upload`" for m in at.markdown)
    thumbs = list((env / "thumbs" / "256").rglob("*.jpg"))
    assert thumbs  # the grid's thumbnails were cached in the index folder


def test_k_and_filters(env, built_index):
    photos = built_index.parent / "photos"
    at = app(CAT)
    at.sidebar.slider(key="k").set_value(3).run()
    assert len(ranks(at)) == 3
    at.sidebar.slider(key="k").set_value(40).run()
    at.sidebar.selectbox(key="folder").select(str(photos / "nested" / "cats")).run()
    assert sorted(names(at)) == sorted(os.listdir(photos / "nested" / "cats"))
    at.sidebar.selectbox(key="folder").select(str(photos / "nested")).run()
    assert len(ranks(at)) == len(pictures_in("nested"))  # nested/ and every folder below it
    at.sidebar.selectbox(key="folder").select("(all)").run()
    at.sidebar.slider(key="size").set_value((0.0, 0.03)).run()
    assert ranks(at) and set(names(at)) <= {
        p.name for p in photos.rglob("*") if p.is_file() and p.stat().st_size <= 31458
    }
    at.sidebar.slider(key="size").set_value((0.0, at.sidebar.slider(key="size").max)).run()
    at.sidebar.checkbox(key="use_dates").check().run()
    assert names(at) == ["tree.webp"]  # the only picture with an EXIF date (2 copies, 1 card)
    assert not at.exception


def test_pick_more_like_this_and_open(env):
    at = app()
    assert not ranks(at) and f"{CORPUS_PICTURES} pictures indexed" in at.caption[0].value
    at.text_input(key="needle").input("kookaburras").run()
    pick = at.selectbox(key="pick")
    assert len(pick.options) == 1
    pick.select(pick.options[0]).run()
    assert ranks(at)[0] == "**#1** · 1.0000 · `kookaburras.pnm`"
    second = names(at)[1]
    at.button(key="more-2").click().run()
    assert names(at)[0] == second and ranks(at)[0].startswith("**#1** · 1.0000")
    at.button(key="open-1").click().run()
    details = next(m.value for m in at.markdown if "**Dimensions:**" in m.value)
    assert "**Format:**" in details and "**Size:**" in details and "bytes" in details
    at.button(key="opened-close").click().run()
    assert not any("**Dimensions:**" in m.value for m in at.markdown)
    assert not at.exception


def test_bad_bomb_and_oversized_uploads_get_messages(env):
    at = app(b"this is not a picture")
    assert not at.exception and not ranks(at)
    assert "Cannot search with this image" in at.error[0].value
    assert "not an image" in at.error[0].value
    at = app(CAT[:2000])  # truncated JPEG
    assert "Cannot search with this image" in at.error[0].value
    at = app(b"")
    assert "is empty" in at.error[0].value
    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)
    try:
        at = app(CAT * 40)  # 1.3 MB
    finally:
        config.set_option("server.maxUploadSize", before)
    assert "uploads are limited to 1 MB" in at.error[0].value and not ranks(at)
    at.session_state["upload_bytes"] = CAT  # a good upload clears the message
    at.run()
    assert not at.error and names(at)[0] == "cat.jpg"


def test_unusable_weights_give_a_message(env, monkeypatch, tmp_path):
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(tmp_path / "missing.safetensors"))
    at = app(CAT)
    assert not at.exception and not ranks(at)
    assert "The encoder could not answer" in at.error[0].value
    assert "missing" in at.error[0].value


def test_accept_upload_is_a_plain_function():
    session: dict = {}
    assert not state.accept_upload(session, "big.jpg", b"x" * 3_000_000, 2)
    assert "uploads are limited to 2 MB" in session[state.MESSAGE]
    assert state.QUERY not in session
    assert state.accept_upload(session, "cat.jpg", CAT, 20)
    assert session[state.QUERY].data == CAT and state.MESSAGE not in session
    state.accept_indexed(session, 7, "/x/y.jpg")
    assert session[state.QUERY].content_id == 7 and not session[state.QUERY].is_upload


@pytest.mark.parametrize("page", [None, DUPLICATES, STATUS])
def test_missing_empty_or_damaged_index_says_how_to_build(monkeypatch, tmp_path, page):
    for index in (tmp_path / "nothing", tmp_path / "empty", tmp_path / "damaged"):
        if index.name == "empty":
            Catalog(index).close()  # a catalog with no pictures (a build that found none)
        if index.name == "damaged":
            index.mkdir(exist_ok=True)
            (index / "catalog.sqlite").write_bytes(b"not a database" * 100)
        monkeypatch.setenv("PHOTO_INDEX_INDEX", str(index))
        at = AppTest.from_file(APP, default_timeout=60).run()
        if page:
            at.switch_page(page).run()
        assert not at.exception
        assert f"index build PATH/TO/PHOTOS --index {index}" in at.info[0].value


def test_duplicates_page(env):
    at = app()
    at.switch_page(DUPLICATES).run()
    assert not at.exception
    summary = next(m.value for m in at.markdown if " groups: " in m.value)
    groups = CORPUS_COPY_GROUPS + 1  # and the bee as HEIC, GIF and JPEG: near-identical
    assert summary.startswith(
        f"{groups} groups: {CORPUS_COPY_GROUPS} exact · 1 near-identical · 0 near-duplicate"
    )
    table = next(m.value for m in at.markdown if m.value.startswith("| tier |"))
    assert "| near-duplicate | CLIP cosine ≥ 0.95 | 0 | 0 | 0 | 0 bytes |" in table
    assert "| near-identical | pHash ≤ 10 bits apart (score ≥ 0.844) | 1 |" in table
    bee = next(m.value for m in at.markdown if m.value.startswith("**exact group 1**"))
    assert "3 files" in bee and "keep `bee.jpg`" in bee
    texts = [m.value for m in at.markdown]
    start = texts.index(bee)
    assert texts[start + 1 : start + 4] == [  # the kept copy first, marked
        ":green-badge[KEEP] `bee.jpg`",
        ":gray-badge[copy] `bee.jpg`",
        ":gray-badge[copy] `bee.jpg`",
    ]
    marks = [t for t in texts if "-badge[" in t]
    assert sum("green-badge[KEEP]" in m for m in marks) == groups  # one kept file per group
    buttons = {b.label for b in at.get("download_button")}
    assert buttons == {"Report (JSON)", "Report (CSV)", "Report (HTML)", "Quarantine script"}
    at.sidebar.slider(key="near").set_value(0.9).run()  # thresholds reach the library
    summary = next(m.value for m in at.markdown if " groups: " in m.value)
    assert "1 near-identical · 3 near-duplicate" in summary
    assert "CLIP cosine ≥ 0.9 |" in next(m.value for m in at.markdown if "| tier |" in m.value)
    at.sidebar.checkbox(key="use_similar").check().run()
    assert "similar" in at.selectbox(key="dup_tier").options[-1]
    at.sidebar.text_input(key="keep").input("no-such-rule").run()
    assert "keep rule" in at.error[0].value and not at.exception


@pytest.fixture(scope="module")
def many_groups(tmp_path_factory) -> Path:
    """45 exact pairs of generated pictures (random pixels: no two alike), 30 in a/, 15 in b/."""
    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(14)
    for i in range(45):
        folder = root / "photos" / ("a" if i < 30 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        shutil.copy(folder / f"{i}.png", folder / f"{i} copy.png")
    fill_from_files(root / "index", sorted((root / "photos").rglob("*.png")))
    return root / "index"


def groups_shown(at: AppTest) -> list[str]:
    return [m.value.split("**")[1] for m in at.markdown if m.value.startswith("**exact group")]


def test_duplicates_page_at_scale_pages_filters_and_lazy_thumbnails(monkeypatch, many_groups):
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(many_groups))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    photos = many_groups.parent / "photos"
    at = app()
    at.switch_page(DUPLICATES).run()
    assert not at.exception
    copies = sum(p.stat().st_size for p in photos.rglob("* copy.png"))
    table = next(m.value for m in at.markdown if m.value.startswith("| tier |"))
    assert f"| exact | identical bytes | 45 | 90 | 45 | {human_size(copies)} |" in table
    assert groups_shown(at) == [f"exact group {i}" for i in range(1, 21)]
    assert at.number_input(key="page").label == "Page (of 3)"
    cached = many_groups / "thumbs" / "256"
    assert len(list(cached.rglob("*.jpg"))) == 20  # one picture per group, this page only
    at.number_input(key="page").set_value(3).run()
    assert groups_shown(at) == [f"exact group {i}" for i in range(41, 46)]
    assert len(list(cached.rglob("*.jpg"))) == 25
    at.selectbox(key="page_size").select(50).run()  # back to page 1, all on it
    assert len(groups_shown(at)) == 45 and at.number_input(key="page").value == 1
    at.selectbox(key="dup_folder").select(str(photos / "b")).run()
    assert len(groups_shown(at)) == 15
    assert "groups 1–15 of 15" in [c.value for c in at.caption]
    at.selectbox(key="dup_tier").select("near-identical").run()
    assert not groups_shown(at) and any("No groups match" in m.value for m in at.markdown)
    assert not at.exception


def test_index_page(env):
    at = app()
    at.switch_page(STATUS).run()
    assert not at.exception
    counts = [str(CORPUS_PICTURES), str(CORPUS_CONTENTS), "2", "1.000"]  # 2: the fakes
    assert [m.value for m in at.metric] == counts
    assert any(m.value.startswith("**FAISS** IDMap2,Flat") for m in at.markdown)
    assert len(at.dataframe[0].value) == 2
    at.text_input(key="ledger").input("not-an-image").run()
    assert list(at.dataframe[0].value["path"])[0].endswith("not-an-image.jpg")
    at.text_input(key="ledger").input("zzz").run()
    assert not at.dataframe


def test_a_build_that_finishes_while_the_app_runs_is_seen(tmp_path, monkeypatch, tiny_encoder):
    photos = tmp_path / "photos"
    shutil.copytree(PHOTOS / "flat", photos)
    settings = Settings.from_env(env={}, index=tmp_path / "index", weights=str(TINY_BIRDER))
    build([photos], settings, encoder=tiny_encoder)
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(settings.index))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    at = app(CAT)
    at.sidebar.slider(key="k").set_value(40).run()
    flat, cats = len(pictures_in("flat")), len(pictures_in("nested/cats"))
    assert len(ranks(at)) == flat and names(at)[0] == "cat.jpg"
    shutil.copytree(PHOTOS / "nested" / "cats", photos / "more-cats")
    build([photos], settings, encoder=tiny_encoder)  # the app's searcher stays loaded
    at.run()
    assert len(ranks(at)) == flat and names(at)[0] == "cat.jpg"  # the new cats are copies:
    assert any(c.value.startswith(":gray-badge[2 copies]") for c in at.caption)  # on its card
    at.sidebar.selectbox(key="folder").select(str(photos / "more-cats")).run()
    assert len(ranks(at)) == cats
    at.switch_page(STATUS).run()
    assert at.metric[0].value == str(flat + cats)


def _rotated_jpeg(path: Path) -> None:
    img = Image.new("RGB", (60, 40), "red")
    img.paste((0, 0, 255), (0, 0, 30, 40))  # left half blue
    exif = Image.Exif()
    exif[274] = 6  # rotate 90° clockwise on display
    img.save(path, "JPEG", exif=exif)


def test_thumbnails_are_cached_oriented_and_catalog_only(tmp_path, tiny_encoder, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    _rotated_jpeg(photos / "rotated.jpg")
    shutil.copy(PHOTOS / "flat" / "cat.jpg", photos / "cat.jpg")
    settings = Settings.from_env(env={}, index=tmp_path / "index", weights=str(TINY_BIRDER))
    build([photos], settings, encoder=tiny_encoder)
    cat = Catalog(settings.index, readonly=True)
    recs = {Path(r["path"]).name: r for r in cat.records()}
    rotated = recs["rotated.jpg"]
    data = thumbnail_bytes(cat, rotated["content_id"])
    thumb = Image.open(io.BytesIO(data))
    assert thumb.size == (40, 60)  # portrait: EXIF orientation applied
    assert thumb.getpixel((20, 5))[2] > 200  # the blue half is now on top
    cached = thumbnail_path(settings.index, rotated["hash"], 256)
    assert cached.read_bytes() == data
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no temp files
    import indexer.imaging as imaging

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached thumbnail was decoded again")

    monkeypatch.setattr(imaging, "open_image", no_decoding)
    assert thumbnail_bytes(cat, rotated["content_id"]) == data
    monkeypatch.undo()
    assert thumbnail_bytes(cat, 10**6) is None and thumbnail_bytes(cat, "1; DROP") is None
    cat_file = photos / "cat.jpg"
    cat_file.write_bytes(b"changed since the build, not the indexed picture")
    assert thumbnail_bytes(cat, recs["cat.jpg"]["content_id"]) is None
    cat.close()


def test_serve_starts_streamlit_on_localhost(monkeypatch, tmp_path):
    import indexer.cli.serve as cli_serve
    from indexer.cli import app as cli

    seen: dict = {}

    class FakeStreamlit:
        def __init__(self, cmd, env, **_kwargs):
            seen.update(cmd=cmd, env=env)

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeStreamlit)
    index = tmp_path / "index"
    (tmp_path / "clip.pt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)  # a relative --text-weights reaches the app made absolute
    args = ["serve", "--index", str(index), "--port", "8765", "--text-weights", "clip.pt"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(cli_serve.APP)
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8765"
    assert flags["--server.maxUploadSize"] == "20" and flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert seen["env"]["PHOTO_INDEX_INDEX"] == str(index.absolute())
    assert seen["env"]["PHOTO_INDEX_TEXT_WEIGHTS"] == str(tmp_path / "clip.pt")
    assert "index build PATH" in result.output  # no index there yet
