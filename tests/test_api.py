"""The public API a Python user imports, as README and the package docstring give it."""

from __future__ import annotations

import indexer


def test_the_public_names_import_and_are_what_they_say():
    from indexer import Encoder, Settings, load_encoder
    from indexer.build import build
    from indexer.dedup import dedup
    from indexer.search import search

    assert sorted(indexer.__all__) == ["Encoder", "Settings", "load_encoder"]
    assert isinstance(Encoder, type) and isinstance(Settings, type)
    for verb, name in (
        (build, "build"),
        (search, "search"),
        (dedup, "dedup"),
        (load_encoder, "load_encoder"),
    ):
        assert callable(verb) and verb.__name__ == name
