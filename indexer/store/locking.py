"""One writer per index folder: a POSIX record lock that dies with its process.

A killed build leaves no stale lock behind (the kernel drops it), so the next build just runs.
POSIX locks (`lockf`), unlike `flock`, are not inherited by forked decode workers, which may
outlive a killed parent for a few seconds.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from indexer.errors import IndexBusyError

LOCK_FILE = "write.lock"
_held: dict[str, int] = {}  # lock files this process holds, and how deeply nested


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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IndexBusyError(
                f"{self.path.parent}: another `index build` is writing to this index "
                f"(pid {holder}); wait for it to finish or use another --index"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        _held[key] = 1
        return self

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
