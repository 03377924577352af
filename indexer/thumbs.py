"""Thumbnails of indexed pictures, made once and cached in the index folder.

The UI asks by catalog content id only, so no path a user typed is ever opened; a thumbnail is
keyed by the content hash (`<index>/thumbs/<size>/ab/<hash>.jpg`), EXIF-oriented, and written
atomically so concurrent sessions never see half a file.
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path
from typing import Any

from indexer import imaging
from indexer.files import open_regular, write_atomic
from indexer.store.catalog import Catalog

THUMB_DIR = "thumbs"
JPEG_QUALITY = 85
_HEX = re.compile(r"[0-9a-f]{16,128}")


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
    try:
        with open_regular(cached) as fh:
            return fh.read()
    except OSError:
        pass
    for rec in records:  # any unchanged copy of the content will do
        data = _render(rec, size, options)
        if data is not None:
            _write_atomic(cached, data)
            return data
    return None


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


def _write_atomic(path: Path, data: bytes) -> None:
    """Cache a thumbnail; a read-only index still shows thumbnails (the write is skipped)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except OSError:
        pass
