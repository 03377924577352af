"""Walk folders, recognise images by content, hash files, and sort them against the catalog.

A file is identified by its full-content hash, so renames and copies never cost an embedding;
unchanged files (same path, size and mtime) are not even re-read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from indexer import kinds, raw
from indexer.atomic import atomic_path

HASH_NAME = "blake2b-256"  # content_hash's algorithm, pinned in the catalog (meta content_hash)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """A regular file found by the scan: absolute path (symlinks kept as named), size, mtime."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """What a scan found: candidate images, files that claim to be images but cannot be
    (empty), unreadable paths, and what it skipped quietly, by kind (`kinds`)."""

    images: list[FileEntry] = field(default_factory=list)
    not_images: list[tuple[FileEntry, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped: int = 0  # the total of skipped_kinds
    skipped_kinds: Counter[str] = field(default_factory=Counter)

    def skip(self, kind: str) -> None:
        """Count one quietly skipped file or folder of `kind` (video, sidecar, hidden...)."""
        self.skipped += 1
        self.skipped_kinds[kind] += 1

    # folders whose contents the scan could not see, (path, reason): a root that is not there,
    # a folder that could not be listed (also in errors). What is indexed under them is not gone.
    unlisted: list[tuple[str, str]] = field(default_factory=list)
    # roots that exist but showed no file, (path, "empty" | "not a folder"): an unmounted
    # disk's mount point looks like this
    odd_roots: list[tuple[str, str]] = field(default_factory=list)


def sniff_image(head: bytes) -> bool:
    """True when the first bytes of a file carry the signature of a raster image format."""
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n":
        return True
    if head[:6] in (b"GIF87a", b"GIF89a") or head[:2] == b"BM":
        return True
    if head[:4] in (b"II*\x00", b"MM\x00*", b"8BPS", b"qoif", b"\x00\x00\x01\x00"):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xffO\xffQ":
        return True
    if head[4:8] == b"ftyp" and head[8:12] in (
        b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
    ):  # fmt: skip
        return True
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3].isspace():
        return True
    return False


def _image_suffixes() -> frozenset[str]:
    """Suffixes that claim a picture: PIL's (less .pdf, .mpg... that name other kinds) + raw."""
    pil = {ext.lower() for ext in Image.registered_extensions()}
    return frozenset((pil | kinds.PICTURE_SUFFIXES) - kinds.SUFFIX_KINDS.keys())


def scan(
    roots: Iterable[str | Path],
    *,
    excludes: Iterable[str] = (),
    include_hidden: bool = False,
    never: Iterable[str | Path] = (),
) -> ScanResult:
    """Walk `roots` recursively (following symlinks, never twice into the same folder).

    Hidden names, excluded folder names and the folders in `never` (the index home, matched
    by device and inode, so symlinks and relative paths cannot sneak it in) are skipped;
    every other regular file is an image candidate or a non-picture counted by kind.
    Roots not there and folders that cannot be listed are `unlisted`; empty roots are
    `odd_roots`.
    """
    result = ScanResult()
    suffixes = _image_suffixes()
    excluded = frozenset(excludes)
    seen_dirs: set[tuple[int, int]] = set()
    never_ids = folder_ids(never)
    for root in roots:
        root_path = os.path.abspath(os.fspath(root))
        try:
            st = os.stat(root_path)
        except OSError as exc:
            gone = isinstance(exc, (FileNotFoundError, NotADirectoryError))
            reason = "not there" if gone else f"cannot read: {exc.strerror or exc}"
            result.unlisted.append((root_path, reason))
            continue
        if never_ids and _inside(root_path, never_ids):
            continue
        if stat.S_ISDIR(st.st_mode):
            found, unlisted = 0, len(result.unlisted)
            for entry in _walk(root_path, excluded, include_hidden, seen_dirs, result, never_ids):
                found += 1
                _classify(entry, suffixes, result)
            if not found and root_path not in dict(result.unlisted[unlisted:]):
                result.odd_roots.append((root_path, "empty"))
        elif stat.S_ISREG(st.st_mode):
            _classify(FileEntry(root_path, st.st_size, st.st_mtime_ns), suffixes, result)
            result.odd_roots.append((root_path, "not a folder"))
        else:
            result.odd_roots.append((root_path, "not a folder"))
    return result


def folder_ids(folders: Iterable[str | Path]) -> frozenset[tuple[int, int]]:
    """(st_dev, st_ino) of the folders among `folders` that exist: a folder's identity,
    whatever path or symlink reaches it."""
    ids = set()
    for folder in folders:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            ids.add((st.st_dev, st.st_ino))
    return frozenset(ids)


def _inside(path: str, ids: frozenset[tuple[int, int]]) -> bool:
    """Is `path` (symlinks resolved) one of the folders `ids`, or inside one?"""
    current = os.path.realpath(path)
    while True:
        try:
            st = os.stat(current)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) in ids:
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def _walk(
    top: str,
    excluded: frozenset[str],
    include_hidden: bool,
    seen_dirs: set[tuple[int, int]],
    result: ScanResult,
    never: frozenset[tuple[int, int]] = frozenset(),
) -> Iterator[FileEntry]:
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            result.unlisted.append((folder, f"cannot read folder: {exc.strerror or exc}"))
            result.errors.append((printable_path(folder), result.unlisted[-1][1]))
            continue
        key = (st.st_dev, st.st_ino)
        if key in never:  # the index home: its catalog and thumbnails are not photos
            continue
        if key in seen_dirs:  # symlink loop or a second link to the same folder
            result.skip(kinds.LOOP)
            continue
        seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            result.unlisted.append((folder, f"cannot list folder: {exc.strerror or exc}"))
            result.errors.append((printable_path(folder), result.unlisted[-1][1]))
            continue
        subdirs = []
        for entry in entries:
            if (not include_hidden and entry.name.startswith(".")) or entry.name in excluded:
                result.skip(kinds.HIDDEN)
                continue
            try:
                est = entry.stat(follow_symlinks=True)
            except OSError as exc:
                reason = "dangling symlink" if entry.is_symlink() else (exc.strerror or str(exc))
                result.errors.append((printable_path(entry.path), f"cannot read: {reason}"))
                continue
            if stat.S_ISDIR(est.st_mode):
                subdirs.append(entry.path)
            elif stat.S_ISREG(est.st_mode):
                yield FileEntry(entry.path, est.st_size, est.st_mtime_ns)
            else:
                result.skip(kinds.SPECIAL)
        stack.extend(reversed(subdirs))


def printable_path(path: str) -> str:
    """A path that can be stored and printed: undecodable bytes become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def kind_of(mode: int) -> str | None:
    """What a stat mode names when it is not a regular file ("folder", "FIFO", "socket", a
    device); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return "folder" if stat.S_ISDIR(mode) else _KINDS.get(stat.S_IFMT(mode), "special file")


class NotRegularFileError(OSError):
    """A path that names a FIFO, socket or device: reading it could block or never end."""


def open_regular(path: str | Path, buffering: int = -1) -> BinaryIO:
    """Open a file for reading only if it is a regular file, without ever blocking.

    O_NONBLOCK makes opening a FIFO return at once; fstat on the open descriptor (not the
    path, which may change) then refuses anything but a regular file. Regular files ignore
    O_NONBLOCK, so the returned binary file reads as usual (`buffering=0`: raw, for a few
    big reads or one small one, as fast as a plain open).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "special file")
            raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind})", os.fspath(path))
        return open(fd, "rb", buffering=buffering)  # the caller closes it
    except BaseException:
        os.close(fd)
        raise


def _classify(entry: FileEntry, suffixes: frozenset[str], result: ScanResult) -> None:
    suffix = os.path.splitext(entry.path)[1].lower()
    if printable_path(entry.path) != entry.path:
        result.errors.append(
            (printable_path(entry.path), "file name is not valid UTF-8; rename it to index it")
        )
        return
    if suffix in kinds.SIDECAR_SUFFIXES:
        result.skip(kinds.SIDECAR)
        return
    if suffix in kinds.RAW_SUFFIXES and not raw.available():  # counted, with the install hint
        result.skip(kinds.RAW)
        return
    try:
        with open_regular(entry.path, buffering=0) as fh:
            head = fh.read(32)
    except OSError as exc:
        result.errors.append((entry.path, f"cannot read: {exc.strerror or exc}"))
        return
    if sniff_image(head):  # content that claims a picture wins over any name
        result.images.append(entry)
        return
    kind = kinds.SUFFIX_KINDS.get(suffix)
    if kind is None and suffix not in suffixes:  # no claim by name: the content decides
        kind = kinds.content_kind(head)
    if kind is not None:
        result.skip(kind)
    elif entry.size == 0:
        result.not_images.append((entry, "empty file (0 bytes)"))
    else:  # named as a picture: the decoder says whether it is one (ledgered if not)
        result.images.append(entry)


_ALGORITHMS = {  # name -> hashlib constructor; blake2b-256 is the catalog's content identity
    HASH_NAME: lambda: hashlib.blake2b(digest_size=32),  # never change
    "blake2b-128": lambda: hashlib.blake2b(digest_size=16),  # vectors.faiss integrity
    "sha256": hashlib.sha256,  # an index pins its weights by it
}


def file_digest(source: str | Path | bytes, algorithm: str = HASH_NAME) -> str:
    """Hex digest of a file (streamed through `open_regular`: a FIFO never hangs) or of bytes
    already read; the one hasher behind content hashes, weight pins and index checks."""
    h = _ALGORITHMS[algorithm]()
    if isinstance(source, bytes):
        h.update(source)
        return h.hexdigest()
    with open_regular(source, buffering=0) as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_hash(path: str | Path) -> str:
    """Streamed BLAKE2b-256 of the whole file, hex: the content's identity in the catalog."""
    return file_digest(path)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (an index pins its weights by it)."""
    return file_digest(path, "sha256")


def hash_files(
    entries: list[FileEntry], threads: int | None = None
) -> Iterator[tuple[FileEntry, str | None, str | None]]:
    """Hash files in a thread pool (hashlib releases the GIL on big reads): yields (entry,
    hash, error); `threads` defaults to the core count, at most 16."""

    def one(entry: FileEntry) -> tuple[FileEntry, str | None, str | None]:
        try:
            return entry, content_hash(entry.path), None
        except FileNotFoundError:
            return entry, None, "file disappeared before it could be read"
        except OSError as exc:
            return entry, None, f"cannot read: {exc.strerror or exc}"

    if not entries:
        return
    threads = threads or min(16, os.cpu_count() or 4)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        yield from pool.map(one, entries)


def under_roots(path: str, roots: Iterable[str]) -> bool:
    """Is `path` inside one of the (absolute) scanned roots?"""
    for root in roots:
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


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


def human_size(size: int | None) -> str:
    """Bytes for people: "870 bytes", "12.3 KB", "4.1 MB", "1.2 GB" ("—" when unknown)."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
