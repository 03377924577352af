"""Thumbnails of indexed pictures, made once and cached in the index folder.

The UI asks by catalog content id only, so no path a user typed is ever opened; a thumbnail is
keyed by the content hash (`<index>/thumbs/<size>/ab/<hash>.jpg`), EXIF-oriented, and written
atomically so concurrent sessions never see half a file. A cached file is read without
following links and used only when it is a JPEG of the size asked for; anything else in its
place is rendered again from the photo.
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path
from typing import Any

from PIL import Image

from indexer import imaging
from indexer.atomic import write_atomic
from indexer.store import homefiles
from indexer.store.catalog import Catalog

THUMB_DIR = "thumbs"
JPEG_QUALITY = 85
_HEX = re.compile(r"[0-9a-f]{16,128}")
MAX_THUMB_BYTES = 4 << 20  # far above any JPEG thumbnail we write (a 1024-px q85 is ~300 KB)


def thumbnail_path(index_dir: str | Path, content_hash: str, size: int) -> Path:
    """Where the cached thumbnail of one content at one size lives.

    Sharded by the first two hex digits so no folder grows past a few thousand files.
    """
    return Path(index_dir) / THUMB_DIR / str(int(size)) / content_hash[:2] / f"{content_hash}.jpg"


def thumbnail_bytes(
    catalog: Catalog,
    content_id: int,
    size: int = 256,
    options: imaging.DecodeOptions = imaging.DecodeOptions(),
) -> bytes | None:
    """JPEG bytes of the thumbnail of an indexed content (cached after the first call), or None.

    None when the id is not in the catalog or no copy of it can still be read unchanged.
    """
    try:
        records = catalog.records([int(content_id)])
    except (TypeError, ValueError, OverflowError):
        return None
    if not records or not _HEX.fullmatch(str(records[0]["hash"])):
        return None
    cached = thumbnail_path(catalog.index_dir, records[0]["hash"], size)
    data = cached_thumbnail(catalog.index_dir, cached, size)
    if data is not None:
        return data
    for rec in records:  # any unchanged copy of the content will do
        data = _render(rec, size, options)
        if data is not None:
            _write_atomic(catalog.index_dir, cached, data)
            return data
    return None


def cached_thumbnail(index_dir: str | Path, path: Path, size: int) -> bytes | None:
    """The cached thumbnail's bytes when the file is ours: a regular file reached without any
    link, and a whole JPEG at most `size` px on its longer side; else None (render it again)."""
    try:
        data = homefiles.read_bytes(index_dir, path, MAX_THUMB_BYTES)
    except OSError:
        return None
    if not (data.startswith(b"\xff\xd8\xff") and data.endswith(b"\xff\xd9")):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
            longest = max(img.size)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return data if 0 < longest <= size else None


def jpeg_thumbnail(
    source: str | Path | bytes,
    size: int,
    *,
    quality: int = JPEG_QUALITY,
    options: imaging.DecodeOptions = imaging.DecodeOptions(),
    name: str | None = None,
) -> bytes | None:
    """A JPEG thumbnail (EXIF-oriented, longer side `size`) of a file or of bytes (`name`: their
    file name, whose suffix says RAW), or None when it cannot be decoded. The one renderer
    behind the cache, reports and query previews."""
    try:
        img, _ = imaging.open_image(source, options, draft_to=size, name=name)
        buf = io.BytesIO()
        imaging.thumbnail(img, size).save(buf, "JPEG", quality=quality)
    except (imaging.ImageError, OSError, ValueError):
        return None
    return buf.getvalue()


def _render(rec: dict[str, Any], size: int, options: imaging.DecodeOptions) -> bytes | None:
    """Thumbnail one catalog file if it is still the regular file the build indexed."""
    try:
        st = os.stat(rec["path"])
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != rec["size"]:
        return None
    if rec.get("mtime_ns") is not None and st.st_mtime_ns != rec["mtime_ns"]:
        return None  # changed since the build: its picture may no longer be this content
    return jpeg_thumbnail(rec["path"], size, options=options)


def _write_atomic(index_dir: Path, path: Path, data: bytes) -> None:
    """Cache a thumbnail in real folders of the index (never through a link; the name itself,
    whatever it was, is replaced); a read-only index still shows thumbnails (no write)."""
    try:
        homefiles.make_folders(index_dir, path)
        write_atomic(path, data)
    except OSError:
        pass
