"""A full disk or a read-only index prints one line saying what to free or fix, exits 1, and
loses nothing: the index still opens afterwards (real tmpfs filesystems, see mounts.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import PHOTOS, TINY_BIRDER, index_cli
from mounts import fill, read_only, tmpfs


def build(photos: Path, index: Path) -> subprocess.CompletedProcess:
    weights = ["--weights", str(TINY_BIRDER), "--workers", "1", "--quiet"]
    return index_cli("build", str(photos), "--index", str(index), *weights)


def one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The single `error:` line of a command that stopped with exit 1 and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def add_photos(folder: Path, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(PHOTOS / "flat" / name, folder / name)


def still_healthy(index: Path, photos: Path, count: int) -> None:
    verify = index_cli("verify", "--index", str(index))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"checked {count} files" in verify.stdout
    found = index_cli(
        "search", str(photos / "cat.jpg"), "--index", str(index), "--weights", str(TINY_BIRDER)
    )
    assert found.returncode == 0 and str(photos / "cat.jpg") in found.stdout, found.stderr


def test_full_disk_build_and_dedup_say_what_to_free(tmp_path):
    photos, index, out = tmp_path / "photos", tmp_path / "index", tmp_path / "out"
    add_photos(photos, ["cat.jpg", "bee.jpg", "cake.jpg", "books.jpg"])
    with tmpfs(index, 3072), tmpfs(out, 64):
        assert build(photos, index).returncode == 0
        add_photos(photos, ["camera.jpg", "tree.webp", "chess-knight.tiff", "duck.jp2"])
        filler = fill(index, leave_kb=40)
        line = one_line(build(photos, index), "the disk is full")
        assert line.startswith(f"error: {index}: ")
        assert line.endswith(
            "free space there or point --index at another disk; nothing indexed was lost"
        )

        filler.unlink()
        fill(out, leave_kb=0)
        report = index_cli("dedup", "--index", str(index), "-o", str(out / "r3.html"))
        line = one_line(report, f"{out / 'r3.html'}: the disk is full (No space left on device)")
        assert line.endswith("free space there or write it elsewhere")
        assert list(out.iterdir()) == [out / "filler"]  # no temp left behind

        still_healthy(index, photos, 4)
        assert build(photos, index).returncode == 0
        still_healthy(index, photos, 8)


def test_read_only_index_says_make_it_writable(tmp_path):
    photos, index = tmp_path / "photos", tmp_path / "index"
    add_photos(photos, ["cat.jpg", "bee.jpg"])
    with tmpfs(index, 4096):
        assert build(photos, index).returncode == 0
        add_photos(photos, ["cake.jpg"])
        read_only(index)
        try:
            one_line(
                build(photos, index), f"{index}", "read-only", "make it writable or pass --index"
            )
            report = index_cli("dedup", "--index", str(index), "-o", str(index / "r3.html"))
            one_line(report, f"{index / 'r3.html'}: read-only", "make it writable or pass --index")
            still_healthy(index, photos, 2)  # readers work on a read-only index
        finally:
            read_only(index, on=False)
        assert build(photos, index).returncode == 0
        still_healthy(index, photos, 3)


def test_the_ui_says_the_disk_is_full(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    photos, index = tmp_path / "photos", tmp_path / "index"
    add_photos(photos, ["cat.jpg", "bee.jpg"])
    with tmpfs(index, 1024):
        assert build(photos, index).returncode == 0
        filler = fill(index, leave_kb=0)
        for name, value in (("INDEX", index), ("WEIGHTS", TINY_BIRDER), ("DEVICE", "cpu")):
            monkeypatch.setenv(f"PHOTO_INDEX_{name}", str(value))
        app = Path(__file__).resolve().parents[1] / "search_ui" / "app.py"
        at = AppTest.from_file(str(app)).run(timeout=60)
        assert not at.exception
        shown = at.error[0].value.replace("\\", "")
        assert f"{index}: the disk is full" in shown and "point --index at another disk" in shown
        filler.unlink()
        at = AppTest.from_file(str(app)).run(timeout=60)
        assert not at.exception and not at.error


def test_describe_os_error_tells_index_from_output_paths(tmp_path):
    import errno
    import os
    import sqlite3

    from indexer.errors import describe_os_error

    index = tmp_path / "idx"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write names no file
    assert describe_os_error(full, index) == (
        f"{index}: the disk is full (No space left on device); free space there or point "
        "--index at another disk; nothing indexed was lost"
    )
    report = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "r.html"))
    assert describe_os_error(report, index).endswith("; free space there or write it elsewhere")
    denied = PermissionError(errno.EACCES, "Permission denied", str(index / "catalog.sqlite"))
    assert describe_os_error(denied, index) == (
        f"{index / 'catalog.sqlite'}: permission denied (Permission denied); "
        "fix its permissions or pass --index"
    )
    assert describe_os_error(sqlite3.OperationalError("database or disk is full"), index) == (
        f"{index}: the disk is full (database or disk is full); free space there or point "
        "--index at another disk; nothing indexed was lost"
    )
    assert describe_os_error(OSError(errno.ENOENT, "No such file"), index) is None
    assert describe_os_error(ValueError("not ours"), index) is None
