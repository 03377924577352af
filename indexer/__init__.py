"""photo-index: CLIP ViT-L/14 image embeddings in SQLite + FAISS, search by image, dedup reports.

One shape for every verb: `Index(path, **settings).build(roots)`, `.search(query)`,
`.dedup()`, `.stats()`, `.failures()`, `.verify()` (indexer.api). The encoder API (image and
text towers, CLIP's tokenizer) and the settings are re-exported lazily here so `import indexer`
stays cheap for the CLI. The functions behind the verbs stay where they are:
`from indexer.build import build`, `from indexer.search import search`,
`from indexer.dedup import dedup`. `__version__` comes from the installed package's metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see (py.typed); at run time __getattr__ imports lazily
    from indexer.api import Index as Index
    from indexer.encoder import Encoder as Encoder
    from indexer.encoder import load_encoder as load_encoder
    from indexer.encoder.text_encoder import load_text_encoder as load_text_encoder
    from indexer.encoder.tokenizer import load_tokenizer as load_tokenizer
    from indexer.settings import Settings as Settings

    __version__: str

_API = {
    "Index": "indexer.api",
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
