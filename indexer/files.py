"""Walk folders, recognise images by content, hash files, and sort them against the catalog.

A file is identified by its full-content hash, so renames and copies never cost an embedding;
unchanged files (same path, size and mtime) are not even re-read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

HASH_NAME = "blake2b-256"
_CHUNK = 1 << 20

# Files that live beside photos and are not pictures: skipped without a ledger entry.
SIDECAR_SUFFIXES = frozenset(
    {".xmp", ".aae", ".thm", ".json", ".db", ".ini", ".ds_store", ".lrv", ".pp3", ".dop"}
)


@dataclass(frozen=True)
class FileEntry:
    """A regular file found by the scan: absolute path (symlinks kept as named), size, mtime."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """What a scan found: candidate images, files that are not images, and unreadable paths."""

    images: list[FileEntry] = field(default_factory=list)
    not_images: list[tuple[FileEntry, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped: int = 0  # hidden files, excluded folders, sidecars, revisited symlink targets
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
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def scan(
    roots: Iterable[str | Path],
    *,
    excludes: Iterable[str] = (),
    include_hidden: bool = False,
) -> ScanResult:
    """Walk `roots` recursively (following symlinks, never twice into the same folder).

    Hidden names and excluded folder names are skipped; every other regular file is sorted
    into images (by content signature, or an image suffix PIL knows) and not-images. Roots
    not there and folders that cannot be listed are `unlisted`; empty roots are `odd_roots`.
    """
    result = ScanResult()
    suffixes = _image_suffixes()
    excluded = frozenset(excludes)
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        root_path = os.path.abspath(os.fspath(root))
        try:
            st = os.stat(root_path)
        except OSError as exc:
            gone = isinstance(exc, (FileNotFoundError, NotADirectoryError))
            reason = "not there" if gone else f"cannot read: {exc.strerror or exc}"
            result.unlisted.append((root_path, reason))
            continue
        if stat.S_ISDIR(st.st_mode):
            found, unlisted = 0, len(result.unlisted)
            for entry in _walk(root_path, excluded, include_hidden, seen_dirs, result):
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


def _walk(
    top: str,
    excluded: frozenset[str],
    include_hidden: bool,
    seen_dirs: set[tuple[int, int]],
    result: ScanResult,
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
        if key in seen_dirs:  # symlink loop or a second link to the same folder
            result.skipped += 1
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
                result.skipped += 1
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
                result.skipped += 1
        stack.extend(reversed(subdirs))


def printable_path(path: str) -> str:
    """A path that can be stored and printed: undecodable bytes become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _classify(entry: FileEntry, suffixes: frozenset[str], result: ScanResult) -> None:
    suffix = os.path.splitext(entry.path)[1].lower()
    if printable_path(entry.path) != entry.path:
        result.errors.append(
            (printable_path(entry.path), "file name is not valid UTF-8; rename it to index it")
        )
        return
    if suffix in SIDECAR_SUFFIXES:
        result.skipped += 1
        return
    try:
        with open(entry.path, "rb") as fh:
            head = fh.read(32)
    except OSError as exc:
        result.errors.append((entry.path, f"cannot read: {exc.strerror or exc}"))
        return
    if entry.size == 0:
        result.not_images.append((entry, "empty file (0 bytes)"))
    elif sniff_image(head) or suffix in suffixes:
        result.images.append(entry)
    else:
        kind = "text file" if _looks_like_text(head) else "unknown content"
        result.not_images.append((entry, f"not an image ({kind})"))


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 32 or b in b"\t\r\n" for b in head)


def _hasher(data: bytes = b"") -> Any:
    return hashlib.blake2b(data, digest_size=32)  # the catalog's content identity: never change


def content_hash(path: str | Path) -> str:
    """Streamed BLAKE2b-256 of the whole file, hex: the content's identity in the catalog."""
    h = _hasher()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bytes_hash(data: bytes) -> str:
    """content_hash of bytes already read (a decode worker hashes what it decodes)."""
    return _hasher(data).hexdigest()


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


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write beside the target and rename over it: a reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if isinstance(data, str):
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(data)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
