"""What changed under the watched roots since the last run, and when it has settled.

Observer threads `note` paths as events arrive; the watcher's thread waits until nothing new
came for `quiet` seconds, no file is still open for writing (where the observer reports
closes: inotify) and the files noted stopped growing (size and mtime as at their last event),
or until `max_wait` seconds after the first change, then `take`s one batch for a build.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

TRACK_LIMIT = 100_000  # files whose growth is checked before a run; past it, the quiet alone
Signature = tuple[int, int]  # (size, mtime_ns) of a regular file


def signature(path: str) -> Signature | None:
    """(size, mtime_ns) of a regular file, None for anything else or nothing there."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


@dataclass
class Batch:
    """The changes one run takes: how many events, why, the files tracked for growth and those
    still open for writing (handed back with `put_back` when the run could not start)."""

    events: int = 0
    reasons: set[str] = field(default_factory=set)
    files: dict[str, Signature] = field(default_factory=dict)
    writing: set[str] = field(default_factory=set)

    @property
    def trigger(self) -> str:
        """'changes', 'root back', ... joined for the run's line."""
        return " + ".join(sorted(self.reasons)) or "changes"


class Changes:
    """A thread-safe accumulator of changes, with the waits the watcher's loop needs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._batch = Batch()
        self._first = self._last = 0.0  # monotonic times of the first and latest event
        self._stopping = False

    # ------------------------------------------------------------- from observer threads
    def note(
        self,
        paths: Iterable[str] = (),
        reason: str = "changes",
        *,
        writing: Iterable[str] = (),
        closed: Iterable[str] = (),
    ) -> None:
        """Record one event about `paths` (may be none: a root back, lost events); `writing`:
        files written to and not closed yet, `closed`: files closed, gone or moved."""
        seen = [(p, signature(p)) for p in paths]  # stat outside the lock
        writing = [p for p in writing if _may_be_written(p)]
        with self._cond:
            now = time.monotonic()
            batch = self._batch
            if not batch.events:
                self._first = now
            batch.events += 1
            batch.reasons.add(reason)
            self._last = now
            for path, sig in seen:
                if sig is None:
                    batch.files.pop(path, None)
                elif path in batch.files or len(batch.files) < TRACK_LIMIT:
                    batch.files[path] = sig
            batch.writing.difference_update(closed)
            if len(batch.writing) < TRACK_LIMIT:
                batch.writing.update(writing)
            self._cond.notify_all()

    def stop(self) -> None:
        """Wake every wait: the watcher is stopping."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    # ------------------------------------------------------------- from the watcher's thread
    @property
    def stopping(self) -> bool:
        return self._stopping

    def pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning at once when the watcher is stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout=seconds)

    def wait_any(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a first change; whether there is one."""
        with self._cond:
            self._cond.wait_for(lambda: self._batch.events or self._stopping, timeout=timeout)
            return bool(self._batch.events) and not self._stopping

    def wait_settled(self, quiet: float, max_wait: float) -> None:
        """Block until no event came for `quiet` seconds, no file is open for writing and no
        tracked file grew since its last event, or `max_wait` after the first change (or a
        stop)."""
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                deadline = self._first + max_wait
                if now >= deadline:
                    return
                due = self._last + quiet
                if now < due or self._batch.writing:  # a close or a new event wakes us
                    self._cond.wait(min(due if now < due else deadline, deadline) - now)
                    continue
                files = dict(self._batch.files)
            now_sigs = ((p, signature(p)) for p in files)
            grown = {p: sig for p, sig in now_sigs if sig is not None and sig != files[p]}
            if not grown:
                return
            with self._cond:  # still being written: wait another quiet period
                self._batch.files.update(grown)
                self._last = time.monotonic()

    def take(self) -> Batch:
        """The changes so far, for one run; what arrives from now on is the next batch."""
        with self._cond:
            batch, self._batch = self._batch, Batch()
            return batch

    def put_back(self, batch: Batch) -> None:
        """Return a batch whose run could not start (the index busy), merged with any newer."""
        with self._cond:
            newer = self._batch
            batch.events += newer.events
            batch.reasons |= newer.reasons
            batch.files.update(newer.files)
            batch.writing = newer.writing  # the old batch had settled (or waited long enough)
            if not newer.events:
                self._first = self._last = time.monotonic()
            self._batch = batch
            self._cond.notify_all()


def _may_be_written(path: str) -> bool:
    """Whether a written file can be expected to raise a close event: a regular file with one
    link (a second link may be written and closed under its other name)."""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1
