"""The `index` command (Typer): one module per command family; each parses, makes one
library call and renders. `indexer.cli:main` is the console script; `app` the Typer app.

`index --version` is answered here, before any command module (or Typer) is imported.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main", "version_line"]


def version_line() -> str:
    """'photo-index 0.1.0': what `index --version` prints (from the package metadata)."""
    from indexer import __version__

    return f"photo-index {__version__}"


def main() -> None:  # pragma: no cover - console entry point
    """`index ...`; `index --version` alone costs no import of the commands."""
    if sys.argv[1:] == ["--version"]:
        print(version_line())
        return
    from indexer.cli.app import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "app":  # `from indexer.cli import app` (tests, older console scripts)
        from indexer.cli.app import app

        globals()["app"] = app  # the Typer app, not the submodule its import bound here
        return app
    raise AttributeError(f"module 'indexer.cli' has no attribute {name!r}")
