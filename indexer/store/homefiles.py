"""Files inside the index home, reached without following symbolic links.

An index folder travels (a NAS share, an archive, a backup, another user's disk), so a link
planted in it must never make a command read or write outside it: every folder between the
home and a file is opened as a real folder of its own (`O_NOFOLLOW`), the file itself too, and
only a regular file is read. The home folder itself may be a link: the user named it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from indexer.errors import UserError
from indexer.kinds import file_type

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NOFOLLOW | _CLOEXEC
_READ = os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
_PROC_FD = "/proc/self/fd"


class HomeFileError(UserError, OSError):
    """A name in the index home that is a link or not the kind of file photo-index writes there.

    An OSError, so a cache read that fails this way is simply a cache miss; a UserError, so a
    command that cannot go on prints it as one line.
    """

    def __init__(self, path: str | Path, what: str) -> None:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        super().__init__(errno.ELOOP, f"{shown}: {what}")
        self.filename = str(path)
        self.message = f"{shown}: {what}"

    def __str__(self) -> str:
        return self.message


def kind_of(mode: int) -> str:
    """'a symbolic link', 'a FIFO', 'a folder'... for a file mode (st_mode)."""
    return f"a {file_type(mode)}"


def _names(home: Path, path: Path) -> list[str]:
    """The names from `home` down to `path` (which must be inside it)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(home))
    names = rel.split(os.sep)
    if rel == os.curdir or os.pardir in names or os.path.isabs(rel):
        raise ValueError(f"{path} is not inside the index home {home}")
    return names


def _refuse(path: Path, exc: OSError, expected: str) -> OSError:
    """The error for a name that could not be opened as `expected` ("a folder", "a file"):
    what it is instead, when that is the reason."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return exc
    if stat.S_ISLNK(mode) or exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return HomeFileError(path, f"is {kind_of(mode)} where photo-index keeps {expected}")
    return exc


@contextmanager
def folder(home: Path, names: list[str], *, create: bool = False) -> Iterator[int | None]:
    """A descriptor of home/names..., each step opened without following a link (and made
    first when `create`; None where the system has no `dir_fd`). HomeFileError when a step
    is a link or not a folder."""
    if os.open not in os.supports_dir_fd:  # Windows: by name, each step checked first
        yield _checked_names(Path(home), names, create)
        return
    fd = os.open(home, _FOLDER & ~NOFOLLOW)
    try:
        where = Path(home)
        for name in names:
            where = where / name
            if create:
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                child = os.open(name, _FOLDER, dir_fd=fd)
            except OSError as exc:
                raise _refuse(where, exc, "a folder") from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _checked_names(home: Path, names: list[str], create: bool) -> Any:
    """Where descriptors cannot name folders: each folder checked by name (no link), and
    `dir_fd` None so the caller opens by full path."""
    where = home
    for name in names:
        where = where / name
        if create:
            where.mkdir(exist_ok=True)
        mode = os.lstat(where).st_mode
        if not stat.S_ISDIR(mode):
            raise HomeFileError(where, f"is {kind_of(mode)} where photo-index keeps a folder")
    return None


def open_read(home: str | Path, path: str | Path) -> BinaryIO:
    """Open a file of the home for reading: no link followed on the way or at the end, never
    blocking, and only a regular file (HomeFileError names what it is otherwise)."""
    home, path = Path(home), Path(path)
    names = _names(home, path)
    with folder(home, names[:-1]) as parent:
        try:
            fd = os.open(names[-1] if parent is not None else path, _READ, dir_fd=parent)
        except OSError as exc:
            raise _refuse(path, exc, "a file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise HomeFileError(path, f"is {kind_of(mode)} where photo-index keeps a file")
        return open(fd, "rb")  # the caller closes it
    except BaseException:
        os.close(fd)
        raise


def read_bytes(home: str | Path, path: str | Path, limit: int) -> bytes:
    """The bytes of a home file of at most `limit` bytes (HomeFileError when it is longer)."""
    with open_read(home, path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise HomeFileError(path, f"is larger than the {limit} bytes such a file can hold")
    return data


def reopen_path(fh: BinaryIO, path: str | Path) -> str:
    """A path that names the very file `fh` has open (/proc/self/fd/N on Linux; else `path`,
    just checked), for readers that take a path (FAISS): no name in the home is looked up
    again where the system allows it."""
    fd_path = f"{_PROC_FD}/{fh.fileno()}"
    return fd_path if os.path.isdir(_PROC_FD) else str(path)


def make_folders(home: str | Path, path: str | Path) -> None:
    """Create the folders above `path` inside the home, never through a link, before a write
    (atomic writes then rename inside real folders of the home)."""
    home, path = Path(home), Path(path)
    with folder(home, _names(home, path)[:-1], create=True):
        pass


def check_plain(path: str | Path) -> None:
    """Refuse a name that exists and is not a regular file (a link, FIFO, folder...): for
    files another library opens by name (SQLite's catalog and its -wal/-shm)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise HomeFileError(path, f"is {kind_of(mode)} where photo-index keeps a file")
