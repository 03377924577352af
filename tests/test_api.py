"""The public API a Python user imports, as README and the package docstring give it."""

from __future__ import annotations

import shutil
from importlib.metadata import version

import numpy as np

import indexer
from tests.conftest import FIXTURE_DIR, PHOTOS, TINY_BIRDER

FULL_CLIP = FIXTURE_DIR / "clip-text-tiny" / "tiny_clip_open_clip.safetensors"


def test_the_public_names_import_and_are_what_they_say():
    from indexer import Encoder, Settings, load_encoder, load_text_encoder, load_tokenizer
    from indexer.build import build
    from indexer.dedup import dedup
    from indexer.search import search

    assert sorted(indexer.__all__) == [
        "Encoder",
        "Index",
        "Settings",
        "load_encoder",
        "load_text_encoder",
        "load_tokenizer",
    ]
    assert isinstance(Encoder, type) and isinstance(Settings, type)
    for verb, name in (
        (build, "build"),
        (search, "search"),
        (dedup, "dedup"),
        (load_encoder, "load_encoder"),
        (load_text_encoder, "load_text_encoder"),
        (load_tokenizer, "load_tokenizer"),
    ):
        assert callable(verb) and verb.__name__ == name


def test_text_encoder_and_tokenizer_give_the_reference_projection():
    """What README's Python example does: words → ids → a unit vector equal to open_clip's."""
    from indexer import load_text_encoder, load_tokenizer

    expected = dict(np.load(FULL_CLIP.parent / "tiny_text_expected.npz"))
    tokenizer = load_tokenizer()
    ids = tokenizer.tokenize([str(expected["prompts"][1])])
    np.testing.assert_array_equal(ids[0], expected["input_ids"][1])
    encoder = load_text_encoder(FULL_CLIP, device="cpu", dtype="fp32")
    vector = encoder.encode_ids(ids)[0]
    np.testing.assert_allclose(vector, expected["projection_normalized"][1], atol=1e-4, rtol=0)


def test_one_shape_for_every_verb_the_index_first(tmp_path):
    """README's notebook example: Index(path).build / .search / .dedup / .stats / .failures,
    the same answers as the functions the command calls."""
    from indexer import Index
    from indexer.dedup import dedup
    from indexer.search import search

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("cat.jpg", "bee.jpg", "cake.jpg"):
        shutil.copy(PHOTOS / "flat" / name, photos / name)
    shutil.copy(PHOTOS / "flat" / "cat.jpg", photos / "cat copy.jpg")
    index = Index(tmp_path / "index", weights=str(TINY_BIRDER), workers=1)
    assert index.path == (tmp_path / "index").absolute() and not index.path.exists()
    summary = index.build(photos)  # one folder or a list of them
    assert (summary.new, summary.embedded, summary.failed) == (4, 3, 0)
    hits = index.search(photos / "bee.jpg", k=2)
    assert hits[0].path == str(photos / "bee.jpg") and hits[0].score > 0.999
    assert hits == search(photos / "bee.jpg", index.settings, 2)
    groups = index.dedup().groups
    assert [(g.tier, sorted(m["path"] for m in g.members)) for g in groups][0] == (
        "exact",
        [str(photos / "cat copy.jpg"), str(photos / "cat.jpg")],
    )
    assert len(groups) == len(dedup(index.path).groups)
    assert index.stats()["images"] == 4 and index.failures() == []
    assert index.verify()["problems"] == {}
    assert indexer.__version__ == version("photo-index")
