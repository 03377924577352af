"""One `index build`: plan (pure), ingest (catalog writes), pipeline (decode → encode),
the Ray engine, the vanish guard, the summary. `build()` is the entry point.

Its names are loaded when asked, so a module that only needs a light part of this package
(`indexer.build.rehash`'s meta key, `plan`, `summary`) does not import torch with the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexer.build.run import BuildError as BuildError
    from indexer.build.run import ProgressFn as ProgressFn
    from indexer.build.run import build as build

__all__ = ["BuildError", "ProgressFn", "build"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from indexer.build import run

        return getattr(run, name)
    raise AttributeError(f"module 'indexer.build' has no attribute {name!r}")
