"""The observers over the roots: file-system events (inotify, FSEvents, ReadDirectoryChanges)
where they work, polling where they do not (network file systems, or when told), and each root
scheduled again when it comes back or changes identity (a drive mounted again).

Only writes reach the watcher: opens and reads (the build's own decoding) are not asked for,
and paths under the index home, hidden names and excluded folders are dropped, so a build
never wakes the watcher that ran it.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from indexer.files import printable_path
from indexer.watch.changes import Changes

EVENTS = "events"
POLLING = "polling"
MODES = ("auto", EVENTS, POLLING)
# writes, creations, deletions, moves, and the kernel saying it dropped some (then: rescan)
_WANTED: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent, EventsLostEvent,
]  # fmt: skip
# file systems whose changes made elsewhere never raise a local event
NETWORK_FS = frozenset(
    "nfs nfs4 cifs smb3 smbfs ncpfs afs 9p ceph glusterfs fuse.glusterfs lustre gpfs beegfs "
    "fuse.sshfs sshfs davfs fuse.davfs2 fuse.rclone fuse.s3fs fuse.gcsfuse vboxsf prl_fs "
    "fuse.vmhgfs-fuse".split()
)
_LIMITS = (errno.ENOSPC, errno.EMFILE)  # inotify's watch or instance limit
_INOTIFY = sys.platform.startswith("linux")


def filesystem_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type of the file system holding `path` (Linux: from mountinfo), None elsewhere."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])  # \040: space
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, right.split()[0]
    return kind


def choose(root: str, mode: str) -> str:
    """'events' or 'polling' for `root`: as told, else polling on network file systems."""
    if mode != "auto":
        return mode
    return POLLING if filesystem_type(root) in NETWORK_FS else EVENTS


def identity(root: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a root, None when it is not there: a new one means remounted."""
    try:
        st = os.stat(root)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


class _Relevant:
    """Which event paths under one root can change the index: not the index home, no hidden
    name, no excluded folder (what `files.scan` skips)."""

    def __init__(self, root: str, never: Iterable[str], excludes: Iterable[str]) -> None:
        self.root = root.rstrip(os.sep) or os.sep
        self.never = tuple(n.rstrip(os.sep) for n in never)
        self.excludes = frozenset(excludes)

    def __call__(self, path: str) -> bool:
        if any(path == n or path.startswith(n + os.sep) for n in self.never):
            return False
        rel = os.path.relpath(path, self.root) if path != self.root else ""
        parts = [p for p in rel.split(os.sep) if p and p != "."]
        return not any(p.startswith(".") or p in self.excludes for p in parts)


class _Handler(FileSystemEventHandler):
    """Hands one root's relevant event paths to `Changes`; `closes`: its observer reports
    files closed after writing (inotify), so files written and not closed yet can wait."""

    def __init__(self, relevant: _Relevant, changes: Changes, closes: bool) -> None:
        self.relevant = relevant
        self.changes = changes
        self.closes = closes

    def dispatch(self, event: FileSystemEvent) -> None:
        if isinstance(event, EventsLostEvent):  # the kernel's queue overflowed: rescan
            self.changes.note((), "events lost")
            return
        paths = [os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        kept = [p for p in paths if self.relevant(p)]
        if not kept:
            return
        # written to and not closed yet; a creation alone says nothing (links, moves, and the
        # files watchdog finds in a new folder come as creations without a close)
        written = self.closes and isinstance(event, FileModifiedEvent)
        done = isinstance(event, FileClosedEvent | FileDeletedEvent | FileMovedEvent)
        self.changes.note(kept, writing=kept if written else (), closed=kept if done else ())


@dataclass
class _Root:
    path: str
    kind: str  # EVENTS | POLLING
    ident: tuple[int, int] | None = None
    watch: Any = None  # watchdog's ObservedWatch while scheduled
    observer: Any = None


class Observed:
    """The roots under watch; `recheck()` every few seconds notices roots gone and back."""

    def __init__(
        self,
        roots: list[str],
        changes: Changes,
        *,
        mode: str = "auto",
        poll_interval: float = 30.0,
        never: Iterable[str] = (),
        excludes: Iterable[str] = (),
        on_note: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.changes = changes
        self.poll_interval = poll_interval
        self.never = tuple(never)
        self.excludes = tuple(excludes)
        self.note = on_note
        self.roots = [_Root(r, choose(r, mode)) for r in roots]
        self._observers: dict[str, Any] = {}

    def start(self) -> None:
        """Schedule every root that is there (call before the first build: nothing is missed)."""
        for root in self.roots:
            self._schedule(root)

    def recheck(self) -> list[str]:
        """Reschedule roots that came back or were replaced; the roots now back (a run is due)."""
        back = []
        for root in self.roots:
            now = identity(root.path)
            if now == root.ident:
                continue
            was_there = root.ident is not None
            self._unschedule(root)
            if now is None:
                root.ident = None
                self.note(f"{printable_path(root.path)}: not there; its indexed files are kept; "
                          "watching for it to come back")  # fmt: skip
            elif self._schedule(root):
                back.append(root.path)
                self.changes.note((), "root changed" if was_there else "root back")
        return back

    def present(self) -> list[str]:
        """The roots that are there now (the next build scans these)."""
        return [r.path for r in self.roots if identity(r.path) is not None]

    def describe(self) -> dict[str, str]:
        """root → 'events', 'polling every N s' or 'not there' (for the status and the log)."""
        return {r.path: self._word(r) for r in self.roots}

    def stop(self) -> None:
        for observer in self._observers.values():
            observer.stop()
        for observer in self._observers.values():
            observer.join()
        self._observers.clear()

    # ------------------------------------------------------------------ internals
    def _word(self, root: _Root) -> str:
        if root.watch is None:
            return "not there"
        return EVENTS if root.kind == EVENTS else f"polling every {self.poll_interval:g} s"

    def _observer(self, kind: str) -> Any:
        if kind not in self._observers:
            if kind == POLLING:
                made = PollingObserver(timeout=self.poll_interval)
            elif _INOTIFY:  # moves in from outside come as moves, not as files being created
                from watchdog.observers.inotify import InotifyObserver

                made = InotifyObserver(generate_full_events=True)
            else:
                made = Observer()
            made.daemon = True
            made.start()
            self._observers[kind] = made
        return self._observers[kind]

    def _schedule(self, root: _Root) -> bool:
        """Watch `root` if it is there; on inotify's limits, poll it instead (one note)."""
        root.ident = identity(root.path)
        if root.ident is None:
            return False
        relevant = _Relevant(root.path, self._never_for(root.path), self.excludes)
        handler = _Handler(relevant, self.changes, closes=root.kind == EVENTS and _INOTIFY)
        recursive = os.path.isdir(root.path)
        try:
            observer = self._observer(root.kind)
            root.watch = observer.schedule(
                handler, root.path, recursive=recursive, event_filter=_WANTED
            )
        except OSError as exc:
            if root.kind == POLLING or identity(root.path) is None:
                root.ident = None  # gone meanwhile, or unreadable: tried at each recheck
                return False
            root.kind = POLLING  # inotify's limits, or a file system without events
            self.note(f"{printable_path(root.path)}: {_why(exc)}; polling it every "
                      f"{self.poll_interval:g} s instead")  # fmt: skip
            return self._schedule(root)
        root.observer = observer
        return True

    def _unschedule(self, root: _Root) -> None:
        if root.watch is not None:
            try:
                root.observer.unschedule(root.watch)
            except (KeyError, OSError):  # its emitter already stopped (the root was deleted)
                pass
        root.watch = root.observer = None

    def _never_for(self, root: str) -> list[str]:
        """The index home as paths under `root` spell it (it may be reached through a link)."""
        out = [os.path.abspath(n) for n in self.never]
        real_root = os.path.realpath(root)
        for n in self.never:
            real = os.path.realpath(n)
            if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
                out.append(os.path.join(root, os.path.relpath(real, real_root)))
        return out


def _why(exc: OSError) -> str:
    """Why a folder cannot be watched for events, and on inotify's limits, what to raise."""
    if _INOTIFY and exc.errno in _LIMITS:
        return (
            "too many folders for inotify (raise fs.inotify.max_user_watches, e.g. "
            "`sudo sysctl fs.inotify.max_user_watches=1048576`)"
        )
    return f"cannot watch it for events ({exc.strerror or exc})"
