"""The `index` command (Typer): one module per command family; each parses, makes one
library call and renders. `indexer.cli:app` is the console script."""

from indexer.cli.app import app, main

__all__ = ["app", "main"]
