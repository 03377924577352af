"""One `index build`: plan (pure), ingest (catalog writes), pipeline (decode → encode),
the Ray engine, the vanish guard, the summary. `build()` is the entry point.

Its names load on first use: importing a light module of this package (`rehash`, `plan`)
does not import torch through the pipeline (dedup reads rehash's constant)."""

from __future__ import annotations

from typing import Any

__all__ = ["BuildError", "ProgressFn", "build"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from indexer.build import run

        return getattr(run, name)
    raise AttributeError(f"module 'indexer.build' has no attribute {name!r}")
