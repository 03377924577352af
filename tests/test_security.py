"""Security: the UI reads only catalog files, uploads are bounded, no unsafe loaders in the code."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import PHOTOS
from hostile import png_bomb
from streamlit.testing.v1 import AppTest
from test_ui import APP, built_index, env  # noqa: F401 - fixtures

from indexer.catalog import Catalog
from indexer.thumbs import thumbnail_bytes

ROOT = Path(__file__).resolve().parents[1]


def test_thumbnails_only_for_catalog_contents(built_index):  # noqa: F811
    cat = Catalog(built_index, readonly=True)
    top = max(r["content_id"] for r in cat.records())
    assert thumbnail_bytes(cat, top) is not None
    for bogus in (top + 1, -1, 0, 10**9):
        assert thumbnail_bytes(cat, bogus) is None
    made = {p.stem for p in (built_index / "thumbs").rglob("*.jpg")}
    assert made <= {r["hash"] for r in cat.records()}


def test_query_parameters_and_paths_are_ignored(env, monkeypatch):  # noqa: F811
    opened: list[str] = []
    import indexer.imaging as imaging

    real = imaging.open_image

    def spy(source, **kw):
        opened.append(str(source) if not isinstance(source, bytes) else "<bytes>")
        return real(source, **kw)

    monkeypatch.setattr(imaging, "open_image", spy)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["path"] = "../../../../etc/passwd"
    at.query_params["id"] = "/etc/shadow"
    at.run()
    assert not at.exception
    assert not any("etc" in p for p in opened)
    catalog_paths = {r["path"] for r in Catalog(env, readonly=True).records()}
    assert set(opened) <= catalog_paths | {"<bytes>"}


def test_bomb_upload_is_refused(env):  # noqa: F811
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["upload_bytes"] = png_bomb()
    at.run()
    assert not at.exception
    assert "too many megapixels" in at.error[0].value
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["upload_bytes"] = (PHOTOS / "flat" / "cat.jpg").read_bytes()[:3000]
    at.run()
    assert "Cannot search with this image" in at.error[0].value


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
