"""The public API a Python user imports, as README and the package docstring give it."""

from __future__ import annotations

import numpy as np

import indexer
from tests.conftest import FIXTURE_DIR

FULL_CLIP = FIXTURE_DIR / "clip-text-tiny" / "tiny_clip_open_clip.safetensors"


def test_the_public_names_import_and_are_what_they_say():
    from indexer import Encoder, Settings, load_encoder, load_text_encoder, load_tokenizer
    from indexer.build import build
    from indexer.dedup import dedup
    from indexer.search import search

    assert sorted(indexer.__all__) == [
        "Encoder",
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
