"""photo-index: CLIP ViT-L/14 image embeddings in SQLite + FAISS, search by image, dedup reports.

The encoder API (image and text towers, CLIP's tokenizer) and the settings are re-exported
lazily here so `import indexer` stays cheap
for the CLI. The three verbs live in the modules of the same name (a package attribute would be
shadowed by the module): `from indexer.build import build`, `from indexer.search import search`,
`from indexer.dedup import dedup`.
"""

from __future__ import annotations

from typing import Any

_API = {
    "load_encoder": "indexer.encoder",
    "Encoder": "indexer.encoder",
    "load_text_encoder": "indexer.encoder.text_encoder",
    "load_tokenizer": "indexer.encoder.tokenizer",
    "Settings": "indexer.settings",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from the installed package's metadata, read when asked
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("photo-index")
        except PackageNotFoundError:  # a source tree on PYTHONPATH, never installed
            return "0+unknown"
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
