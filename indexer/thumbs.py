"""Thumbnails of indexed pictures, made once and cached in the index folder.

Only content ids from the catalog are accepted, so no user-typed path is ever opened.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from indexer import imaging
from indexer.catalog import Catalog

THUMB_DIR = "thumbs"


def thumbnail_path(index_dir: str | Path, content_hash: str, size: int) -> Path:
    return Path(index_dir) / THUMB_DIR / str(size) / content_hash[:2] / f"{content_hash}.jpg"


def thumbnail_bytes(catalog: Catalog, content_id: int, size: int = 256) -> bytes | None:
    """JPEG bytes of a cached thumbnail (EXIF-oriented) for an indexed content, or None."""
    records = catalog.records([int(content_id)])
    if not records:
        return None
    cached = thumbnail_path(catalog.index_dir, records[0]["hash"], size)
    if cached.exists():
        return cached.read_bytes()
    for rec in records:  # any existing copy of the content will do
        try:
            img, _ = imaging.open_image(rec["path"], draft_to=size)
        except imaging.ImageError:
            continue
        buf = io.BytesIO()
        imaging.thumbnail(img, size).save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, cached)
        except OSError:  # a read-only index still shows thumbnails
            pass
        return data
    return None
