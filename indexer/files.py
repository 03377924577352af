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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from indexer import kinds, raw

HASH_NAME = "blake2b-256"  # content_hash's algorithm, pinned in the catalog (meta content_hash)
_CHUNK = 1 << 20
SPARSE_RATIO = 8  # a file with under 1/8 of its length on disk ...
SPARSE_MIN_HOLES = 64 << 20  # ... and at least 64 MiB of holes is sparse, not a photo


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
    max_file_bytes: int = 0  # longer files are refused unread (0: no bound)


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
    max_file_mb: float = 0,
    known: Callable[[FileEntry], bool] | None = None,
) -> ScanResult:
    """Walk `roots` recursively (following symlinks, never twice into the same folder).

    Hidden names, excluded folder names and the folders in `never` (the index home, matched
    by device and inode, so symlinks and relative paths cannot sneak it in) are skipped;
    every other regular file is an image candidate or a non-picture counted by kind; one
    longer than `max_file_mb` MiB (0: any length), or sparse, is `not_images` unopened.
    Roots not there and folders that cannot be listed are `unlisted`; empty roots are
    `odd_roots`. A file `known` says is indexed and unchanged is an image without being opened.
    """
    result = ScanResult(max_file_bytes=int(max_file_mb * 2**20))
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
            walk = _walk(root_path, excluded, include_hidden, seen_dirs, result, never_ids)
            for entry, est in walk:
                found += 1
                if known is not None and known(entry):
                    result.images.append(entry)
                else:
                    _classify(entry, suffixes, result, est)
            if not found and root_path not in dict(result.unlisted[unlisted:]):
                result.odd_roots.append((root_path, "empty"))
        elif stat.S_ISREG(st.st_mode):
            _classify(FileEntry(root_path, st.st_size, st.st_mtime_ns), suffixes, result, st)
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
) -> Iterator[tuple[FileEntry, os.stat_result]]:
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
                yield FileEntry(entry.path, est.st_size, est.st_mtime_ns), est
            else:
                result.skip(kinds.SPECIAL)
        stack.extend(reversed(subdirs))


def printable_path(path: str) -> str:
    """A path that can be stored and printed: undecodable bytes become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
            kind = kinds.file_type(mode)
            raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind})", os.fspath(path))
        return open(fd, "rb", buffering=buffering)  # the caller closes it
    except BaseException:
        os.close(fd)
        raise


def size_refusal(st: os.stat_result, max_bytes: int) -> str | None:
    """Why a file is not read at all, from its length and what it holds on disk: longer than
    `max_bytes`, or sparse (mostly holes: not a photo, or a cloud placeholder); else None."""
    if max_bytes and st.st_size > max_bytes:
        return (
            f"file is {human_size(st.st_size)}, over --max-file-mb {max_bytes / 2**20:g}: not "
            "read (raise it with --max-file-mb)"
        )
    blocks = getattr(st, "st_blocks", None)
    if blocks is None:  # Windows: no allocation figure
        return None
    allocated = blocks * 512
    if allocated * SPARSE_RATIO < st.st_size and st.st_size - allocated >= SPARSE_MIN_HOLES:
        return (
            f"sparse file: {human_size(st.st_size)} long, {human_size(allocated)} on disk "
            "(mostly holes, or a cloud placeholder not downloaded): not read"
        )
    return None


def _classify(
    entry: FileEntry, suffixes: frozenset[str], result: ScanResult, st: os.stat_result
) -> None:
    suffix = os.path.splitext(entry.path)[1].lower()
    if printable_path(entry.path) != entry.path:
        result.errors.append(
            (printable_path(entry.path), "file name is not valid UTF-8; rename it to index it")
        )
        return
    refusal = size_refusal(st, result.max_file_bytes)
    if refusal is not None:
        result.not_images.append((entry, refusal))
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


def hasher(algorithm: str = HASH_NAME) -> Any:
    """A fresh hashlib object of one of our named algorithms (to hash a stream as written)."""
    return _ALGORITHMS[algorithm]()


def file_digest(source: str | Path | bytes | BinaryIO, algorithm: str = HASH_NAME) -> str:
    """Hex digest of a file (streamed through `open_regular`: a FIFO never hangs), of a file
    already open (read from where it stands) or of bytes already read; the one hasher behind
    content hashes, weight pins and index checks."""
    h = hasher(algorithm)
    if isinstance(source, bytes):
        h.update(source)
        return h.hexdigest()
    if not isinstance(source, str | Path):
        while chunk := source.read(_CHUNK):
            h.update(chunk)
        return h.hexdigest()
    with open_regular(source, buffering=0) as fh:
        return file_digest(fh, algorithm)


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
    return inside_roots(roots)(path)


def inside_roots(roots: Iterable[str]) -> Callable[[str], bool]:
    """`under_roots` for many paths: the roots' prefixes prepared once."""
    exact = frozenset(roots)
    prefixes = tuple(root.rstrip(os.sep) + os.sep for root in exact)
    return lambda path: path in exact or path.startswith(prefixes)


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
