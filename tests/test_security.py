"""Security: the UI reads only catalog files, uploads are bounded, no unsafe loaders in the code."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from conftest import APP, PHOTOS
from hostile import png_bomb
from streamlit.testing.v1 import AppTest

from indexer.store.catalog import Catalog
from indexer.thumbs import thumbnail_bytes
from search_ui import state

ROOT = Path(__file__).resolve().parents[1]


def test_thumbnails_only_for_catalog_contents(built_index):
    cat = Catalog(built_index, readonly=True)
    top = max(r["content_id"] for r in cat.records())
    assert thumbnail_bytes(cat, top) is not None
    for bogus in (top + 1, -1, 0, 10**9):
        assert thumbnail_bytes(cat, bogus) is None
    made = {p.stem for p in (built_index / "thumbs").rglob("*.jpg")}
    assert made <= {r["hash"] for r in cat.records()}


_OPENED: list[str] | None = None  # paths opened by this process while a test watches
_HOOKED: list[bool] = []


def _record_opens(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(os.path.realpath(os.fsdecode(args[0])))


def watch_opens() -> list[str]:
    """Start recording every open() and os.open() of this process (an audit hook, not a mock)."""
    global _OPENED
    if not _HOOKED:
        sys.addaudithook(_record_opens)  # stays for good; records only while _OPENED is a list
        _HOOKED.append(True)
    _OPENED = []
    return _OPENED


def test_typed_paths_never_make_the_ui_open_a_file(env, tmp_path):
    """A path typed into the search box, the URL or session state opens nothing outside the
    catalog; picking an indexed picture does open it (so the watch sees the app's opens)."""
    global _OPENED
    secret = tmp_path / "secret.jpg"  # a readable picture the catalog does not list
    shutil.copy(PHOTOS / "flat" / "cat.jpg", secret)
    shutil.rmtree(env / "thumbs", ignore_errors=True)  # thumbnails are made from the files again
    opened = watch_opens()
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["path"] = str(secret)
        at.session_state[state.OPENED] = str(secret)
        at.session_state["upload_name"] = str(secret)  # only ever a label
        at.session_state[state.SCRIPTED_UPLOAD] = b"not a picture"
        at.run()
        assert "Cannot search with this image (`secret.jpg`)" in at.error[0].value
        for typed in (str(secret), str(tmp_path), "../" * 8 + str(secret)):
            at.text_input(key="needle").input(typed).run()
            assert at.selectbox(key="pick").options == []
        at.text_input(key="needle").input("kookaburras").run()
        at.selectbox(key="pick").select(at.selectbox(key="pick").options[0]).run()
        at.session_state[state.OPENED] = str(secret)
        at.run()
    finally:
        _OPENED = None
    assert not at.exception
    picked = Catalog(env, readonly=True).records()
    picked = [r["path"] for r in picked if r["path"].endswith("kookaburras.pnm")]
    assert os.path.realpath(picked[0]) in opened  # the watch works
    assert not [p for p in opened if p.startswith(os.path.realpath(tmp_path))]


def test_bomb_upload_is_refused(env):
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["upload_bytes"] = png_bomb()
    at.run()
    assert not at.exception
    assert "too many megapixels" in at.error[0].value
    assert not [m for m in at.markdown if m.value.startswith("**#")]  # no results shown


def test_no_shell_eval_or_untrusted_pickle_in_the_code():
    unsafe = re.compile(
        r"shell=True|(?<![.\w])eval\(|(?<![.\w])exec\(|pickle\.loads?\(|weights_only=False"
    )
    offenders = []
    for path in list((ROOT / "indexer").rglob("*.py")) + list((ROOT / "search_ui").rglob("*.py")):
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if unsafe.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert offenders == []
    loads = (ROOT / "indexer" / "encoder" / "checkpoints.py").read_text()
    assert "weights_only=True" in loads
