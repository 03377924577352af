"""What decoders say about one picture (Pillow's warnings, libtiff's messages), caught per picture.

Left alone, they reach the terminal raw, name no photo and break the progress bar; caught, a
build prints one `warning:` line naming the photo (`--verbose`: with the decoder's own words).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

MAX_NOTE = 300  # characters kept of one message (a decoder can print a whole hex dump)
MAX_NOTES = 5  # messages kept per picture
_sink: BinaryIO | None = None  # this process's stderr catcher: unlinked at once, no leftovers


@contextmanager
def caught(stderr: bool | None = None) -> Iterator[list[str]]:
    """Collect the decoders' words while the block runs: Python warnings always, and what C
    libraries (libtiff...) write on stderr when `stderr` (default: in the main thread, where
    nothing else prints meanwhile). The list is filled when the block ends, even on a raise."""
    notes: list[str] = []
    if stderr is None:
        stderr = threading.current_thread() is threading.main_thread()
    saved = _redirect() if stderr else None
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            yield notes
    finally:
        said = _restore(saved) if saved is not None else ""
        found = [
            str(w.message) for w in seen if issubclass(w.category, (UserWarning, RuntimeWarning))
        ]
        found += said.splitlines()
        for note in found:
            note = " ".join(note.split())[:MAX_NOTE]
            if note and note not in notes and len(notes) < MAX_NOTES:
                notes.append(note)


def _redirect() -> int | None:
    """Point fd 2 at this process's catcher; the real stderr's copy, or None if not possible."""
    global _sink
    try:
        sys.stderr.flush()
        if _sink is None:
            _sink = tempfile.TemporaryFile()
        _sink.seek(0)
        _sink.truncate()
        saved = os.dup(2)
        os.dup2(_sink.fileno(), 2)
        return saved
    except (OSError, ValueError, AttributeError):  # no stderr, a closed one, no temp space
        return None


def _restore(saved: int) -> str:
    """Put the real stderr back and return what was written meanwhile."""
    os.dup2(saved, 2)
    os.close(saved)
    assert _sink is not None
    _sink.seek(0)
    return _sink.read(64 << 10).decode("utf-8", "replace")


def warning_line(path: str, notes: list[str], verbose: bool) -> str:
    """The one line a caught picture gets (without `warning: `): the photo, and either the
    decoder's words (`verbose`) or how to see them."""
    if verbose:
        return f"{path}: the decoder said: " + " | ".join(notes)
    return (
        f"{path}: the decoder reported a problem in this file; it was read as far as it goes "
        "(--verbose shows the decoder's words)"
    )
