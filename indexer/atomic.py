"""Atomic writes whose temp files always have an owner that cleans them up.

A temp file is named after its target and its writer (`.NAME.tmp-PID-RANDOM`), written beside
the target and renamed over it. A writer killed halfway (kill -9, power loss) leaves its temp
behind; the next write of the same target removes the temps of writers that are gone, and
`index verify` lists (and `--repair` removes) them in the index home.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STALE_AFTER_S = 24 * 3600  # a temp nobody wrote to for a day is stale whatever its PID says
_NAME_MAX = 200  # bytes of the target name kept in a temp name (file names stop at 255)
_TEMP = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}", re.S)
_LEGACY = (  # names older versions used: `.NAME.tmpPID` (FAISS, export), mkstemp's, embed's
    re.compile(r"\.(?P<name>.+)\.tmp(?P<pid>\d+)", re.S),
    re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp", re.S),
    re.compile(r"\.(?P<name>.+)\.tmp", re.S),
)


@dataclass(frozen=True)
class TempFile:
    """A temp file left beside a target: who wrote it (pid, None when unknown) and whether
    that writer is gone (`stale`: its process is dead, or nobody wrote to it for a day)."""

    path: Path
    target: str
    pid: int | None
    size: int
    stale: bool


def _short(name: str) -> str:
    raw = os.fsencode(name)
    return name if len(raw) <= _NAME_MAX else os.fsdecode(raw[:_NAME_MAX])


def temp_path(target: str | Path) -> Path:
    """A fresh temp name beside `target` that says whose it is: `.NAME.tmp-PID-RANDOM`."""
    target = Path(target)
    return target.with_name(f".{_short(target.name)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (signal 0 probes, sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:
        return False
    return True


def parse_temp(path: Path) -> tuple[str, int | None] | None:
    """(target name, writer pid or None) when `path` is named like one of our temps."""
    if not path.name.startswith("."):
        return None
    for pattern in (_TEMP, *_LEGACY):
        match = pattern.fullmatch(path.name)
        if match:
            pid = match.groupdict().get("pid")
            return match["name"], int(pid) if pid else None
    return None


def _examine(path: Path, now: float) -> TempFile | None:
    parsed = parse_temp(path)
    if parsed is None:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):  # never a link, folder or FIFO that happens to match
        return None
    name, pid = parsed
    old = now - st.st_mtime > STALE_AFTER_S
    stale = old or (pid is not None and pid != os.getpid() and not pid_alive(pid))
    return TempFile(path, name, pid, st.st_size, stale)


def find_temps(folder: str | Path, *, recursive: bool = False) -> list[TempFile]:
    """Temp files of atomic writes in `folder` (and below it when `recursive`)."""
    now = time.time()
    found: list[TempFile] = []
    for root, dirs, names in os.walk(folder):
        for name in sorted(names):
            temp = _examine(Path(root) / name, now) if name.startswith(".") else None
            if temp is not None:
                found.append(temp)
        if not recursive:
            break
        dirs.sort()
    return found


def remove_stale(temps: list[TempFile]) -> list[TempFile]:
    """Delete the stale temps among `temps`; returns those removed (live writers' are kept)."""
    removed = []
    for temp in temps:
        if temp.stale:
            try:
                temp.path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            removed.append(temp)
    return removed


def clean_stale(target: str | Path) -> list[TempFile]:
    """Remove temps of `target` (same folder, same name) whose writers are gone."""
    target = Path(target)
    short = _short(target.name)
    now = time.time()
    temps = []
    try:
        with os.scandir(target.parent) as it:
            for entry in it:
                if entry.name.startswith(f".{short}."):
                    temp = _examine(Path(entry.path), now)
                    if temp is not None and temp.target in (target.name, short):
                        temps.append(temp)
    except OSError:
        return []
    return remove_stale(temps)


def fsync_path(path: str | Path) -> None:
    """fsync a file or folder by name (folders: some filesystems refuse, which is fine)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if os.path.isdir(path):
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not os.path.isdir(path):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `target` to write (by any writer, e.g. faiss.write_index); on
    success rename it over `target`, on any error remove it: the target is whole or untouched.

    Stale temps of `target` left by dead writers are removed first. `durable` fsyncs the file
    before and its folder after the rename (survives power loss, not only a crash).
    """
    target = Path(target)
    clean_stale(target)
    tmp = temp_path(target)
    try:
        # 0o666 less the user's umask, as any program's new file: an index of private photos
        # under `umask 077` stays private
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield tmp
        if durable:
            fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only folder: there is nothing to remove
            pass
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp), tmp):
            exc.filename = str(target)  # the file people asked for, not our temp
        raise
    if durable:
        fsync_path(target.parent)


def write_atomic(path: str | Path, data: str | bytes, *, durable: bool = False) -> None:
    """Write beside the target and rename over it: a reader never sees half a file.

    The temp names its writer and is cleaned up if the writer dies (see `indexer.atomic`);
    `durable` also fsyncs the file and its folder.
    """
    with atomic_path(path, durable=durable) as tmp:
        if isinstance(data, str):
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(data)
        else:
            with open(tmp, "wb") as fh:
                fh.write(data)
