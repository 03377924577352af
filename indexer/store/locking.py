"""One writer per index folder: a POSIX record lock that dies with its process.

A killed build leaves no stale lock behind (the kernel drops it), so the next build just runs.
POSIX locks (`lockf`), unlike `flock`, are not inherited by forked decode workers, which may
outlive a killed parent for a few seconds. The lock file is written (our pid), so it is opened
without following a link and must be a regular file with no other name: a planted link or hard
link never lets a build empty someone else's file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from indexer.errors import IndexBusyError
from indexer.store.homefiles import NOFOLLOW, HomeFileError, kind_of

LOCK_FILE = "write.lock"
_held: dict[str, int] = {}  # lock files this process holds, and how deeply nested
_OPEN = os.O_RDWR | os.O_CREAT | NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
_OPEN |= getattr(os, "O_CLOEXEC", 0)


class WriterLock:
    """Context manager holding the index's write lock; raises IndexBusyError if taken.

    Re-entrant within a process: POSIX locks belong to the process, and closing a nested
    holder's descriptor would silently release the outer one's lock.
    """

    def __init__(self, index_dir: str | Path) -> None:
        self.path = Path(index_dir) / LOCK_FILE
        self._fd: int | None = None
        self._nested = False
        self._key = ""

    def __enter__(self) -> WriterLock:
        key = self._key = os.path.abspath(self.path)
        if _held.get(key):
            _held[key] += 1
            self._nested = True
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 16, 0).decode("ascii", errors="replace").strip()
            os.close(fd)
            raise IndexBusyError(
                f"{self.path.parent}: another `index build` or `index watch` is writing to this "
                f"index (pid {holder if holder.isdigit() else '?'}); wait for it to finish or "
                "use another --index"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        _held[key] = 1
        return self

    def _open(self) -> int:
        """The lock file's descriptor: created with the user's umask, never through a link,
        and only a regular file of its own (HomeFileError names what it is otherwise)."""
        try:
            fd = os.open(self.path, _OPEN, 0o666)
        except OSError as exc:
            odd = {errno.ELOOP: "a symbolic link", errno.EISDIR: "a folder"}.get(exc.errno or 0)
            if odd is None:
                raise
            raise HomeFileError(self.path, self._odd(odd)) from None
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            return fd
        os.close(fd)
        what = (
            kind_of(st.st_mode)
            if not stat.S_ISREG(st.st_mode)
            else "a file with other names (a hard link)"
        )
        raise HomeFileError(self.path, self._odd(what))

    def _odd(self, what: str) -> str:
        return (
            f"is {what}, not the index's own lock file; photo-index writes to its lock, so it "
            "will not use this one: remove it and run again"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _held[self._key] -= 1
        if self._nested:
            self._nested = False
            return
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
