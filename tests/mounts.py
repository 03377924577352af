"""Real small and read-only filesystems for tests (tmpfs; needs root and mount(8)).

chmod cannot stop root, and the tests run as root, so a full disk and a read-only index are
made for real: a tmpfs of a few hundred KB, filled up or remounted read-only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def tmpfs(folder: Path, size_kb: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_kb` KiB on `folder` (skips the test when that is not possible)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to make a real small or read-only filesystem")
    folder.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def read_only(folder: Path, on: bool = True) -> None:
    """Remount the tmpfs at `folder` read-only (or writable again)."""
    done = _mount("-o", f"remount,{'ro' if on else 'rw'}", str(folder))
    assert done.returncode == 0, done.stderr


def fill(folder: Path, leave_kb: int) -> Path:
    """Fill the filesystem of `folder` until about `leave_kb` KiB are free; returns the filler."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_kb * 1024))
    return filler
