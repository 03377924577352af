"""photo-index: CLIP ViT-L/14 image embeddings in SQLite + FAISS, search by image, dedup reports.

The public API is re-exported lazily here so `import indexer` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "load_encoder": "indexer.encoder",
    "Encoder": "indexer.encoder",
    "Settings": "indexer.settings",
    "build": "indexer.build",
    "search": "indexer.search",
    "dedup": "indexer.dedup",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
