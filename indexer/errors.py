"""The errors meant for the user, and what to free or fix when the disk is full, read-only or
not ours to write.

Every exception whose message is for people derives from `UserError` (a face catches that one
class); the modules that raise them re-export them. One translation of OS and SQLite errors
into one line, shared by the CLI and the UI. Imports nothing heavy (no torch, numpy, faiss).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS,)
_DENIED = (errno.EACCES, errno.EPERM)
# SQLite primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF).
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 3, 8, 10, 13, 14
_FULL_BELOW = 1 << 20  # an I/O error on a disk with less than 1 MiB free is a full disk


class UserError(Exception):
    """An error whose message is meant for the user: a face shows it on one line, no traceback."""


class BuildError(UserError):
    """A build that cannot start (wrong encoder for this index, bad roots...)."""


class SearchError(UserError):
    """A query that cannot be answered (no index, unreadable query image...)."""


class SettingsError(UserError, ValueError):
    """An option outside what it accepts: one line naming the option and the allowed values."""


class CatalogError(UserError):
    """The catalog cannot be opened: missing, empty, damaged, too old for a reader, or newer."""


class DamagedCatalogError(CatalogError):
    """The catalog file cannot be read as SQLite: `index verify --repair` salvages its rows."""


class IndexBusyError(UserError):
    """Another process is writing to this index."""


class IndexFileError(UserError):
    """The FAISS file is missing its state, truncated, corrupt or not the pair of its state."""


class CheckpointError(UserError, ValueError):
    """A weights file we cannot use; the message is one line naming the file and the problem."""

    def __init__(self, path: str | Path, reason: str) -> None:
        reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class WeightsError(UserError, RuntimeError):
    """The default weights cannot be had or do not match their checksum (one-line message)."""


class DeviceError(UserError, ValueError):
    """An unknown or unavailable --device / --dtype."""


class EncoderError(UserError, RuntimeError):
    """The model failed while it ran (a device lost, out of memory): not the input's fault."""


class RayUnavailableError(UserError, RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""


def _sqlite_error(exc: BaseException) -> sqlite3.Error | None:
    """The sqlite3 error itself, or the one SQLAlchemy wrapped (`.orig`)."""
    import sqlite3  # here: every command imports this module, few ever meet a SQLite error

    for candidate in (exc, getattr(exc, "orig", None)):
        if isinstance(candidate, sqlite3.Error):
            return candidate
    return None


def _disk_nearly_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _FULL_BELOW


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _kind(exc: BaseException, where: Path | None) -> tuple[str, str] | None:
    """('full' | 'read-only' | 'denied', the system's words) or None when it is none of these."""
    if isinstance(exc, OSError) and exc.errno is not None:
        words = exc.strerror or os.strerror(exc.errno)
        if exc.errno in _FULL:
            return "full", words
        if exc.errno in _READ_ONLY:
            return "read-only", words
        if exc.errno in _DENIED:
            return "denied", words
        return None
    error = _sqlite_error(exc)
    if error is None:
        return None
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    words = str(error)
    if code == _SQLITE_FULL or "disk is full" in words:
        return "full", words
    if code == _SQLITE_READONLY or "readonly database" in words:
        return "read-only", words
    if where is None:
        return None
    folder = where if where.is_dir() else where.parent
    if code in (_SQLITE_PERM, _SQLITE_CANTOPEN, _SQLITE_IOERR) and _read_only_fs(folder):
        return "read-only", words
    if code in (_SQLITE_PERM, _SQLITE_CANTOPEN) and not os.access(folder, os.W_OK):
        return "denied", words
    if code == _SQLITE_IOERR and _disk_nearly_full(folder):
        return "full", words
    return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.absolute().relative_to(folder.absolute())
    except ValueError:
        return False
    return True


def describe_os_error(exc: BaseException, index_dir: str | Path | None = None) -> str | None:
    """One line for a full disk, a read-only or forbidden place (OSError or SQLite), or None.

    `index_dir` is the index folder the command worked on: where an error without a file name
    happened, and what tells an index problem (fix it or pass --index) from an output path one.
    """
    index = Path(index_dir) if index_dir is not None else None
    filename = getattr(exc, "filename", None)
    where = Path(os.fsdecode(filename)) if filename else index
    kind = _kind(exc, where)
    if kind is None:
        return None
    what, words = kind
    in_index = index is not None and (where is None or _inside(where, index))
    place = index if in_index and what == "full" else where
    shown = "" if place is None else f"{os.fsencode(place).decode('utf-8', 'backslashreplace')}: "
    if what == "full":
        fix = (
            "free space there or point --index at another disk; nothing indexed was lost"
            if in_index
            else "free space there or write it elsewhere"
        )
        return f"{shown}the disk is full ({words}); {fix}"
    if what == "denied":  # reading or writing: both need the permission fixed
        fix = "fix its permissions or pass --index" if in_index else "fix its permissions"
        return f"{shown}permission denied ({words}); {fix}"
    fix = "make it writable or pass --index" if in_index else "make it writable or write elsewhere"
    return f"{shown}read-only ({words}); {fix}"
