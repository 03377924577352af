"""What to run next, in one line: the messages for an index that is missing or empty.

A leaf module (the catalog and the commands that read an index share it; it imports neither).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from indexer.files import printable_path
from indexer.text import plural


def shown(index_dir: str | Path) -> str:
    """The index folder as printed: absolute, undecodable bytes escaped."""
    return printable_path(os.path.abspath(os.fspath(index_dir)))


def build_command(index_dir: str | Path) -> str:
    """'`index build PATH --index X`': the command that fills the index at `index_dir`."""
    return f"`index build PATH --index {shlex.quote(shown(index_dir))}`"


def no_index(index_dir: str | Path) -> str:
    """'no index at X: build one with `index build PATH --index X`'."""
    return f"no index at {shown(index_dir)}: build one with {build_command(index_dir)}"


def empty_index(index_dir: str | Path, failures: int = 0) -> str:
    """'the index at X is empty: build it with `index build PATH --index X`'."""
    why = (
        f" ({plural(failures, 'file')} could not be indexed: see `index failures`)"
        if failures
        else ""
    )
    where = shown(index_dir)
    return f"the index at {where} is empty{why}: build it with {build_command(index_dir)}"
