"""One `index build`: plan (pure), ingest (catalog writes), pipeline (decode → encode),
the Ray engine, the vanish guard, the summary. `build()` is the entry point."""

from indexer.build.run import BuildError, ProgressFn, build

__all__ = ["BuildError", "ProgressFn", "build"]
