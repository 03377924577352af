"""pHashes of an index made by an older version, brought to imaging.PHASH_VERSION once by the
next `index build`, before its scan, without re-embedding anything.

Version 2 differs from 1 only for pictures with transparency (now seen over white) and flat
pictures (now no hash). A flat picture's old hash has almost every bit equal, which dedup
already ignores (imaging.hash_informative); so only pictures with transparency are decoded
again, found by reading the headers of the formats that can carry it (JPEG cannot).
"""

from __future__ import annotations

import os
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select, update

from indexer import files, imaging
from indexer.settings import Settings
from indexer.store.catalog import Catalog, Content, File, chunked

META_KEY = "phash_version"  # absent: version 1
OPAQUE_FORMATS = ("JPEG", "MPO")


def refresh_phashes(cat: Catalog, settings: Settings) -> int:
    """Recompute the stored pHashes that an older version computed differently; returns how
    many changed. The version is recorded once every candidate was read (a file on a missing
    drive or changed since it was indexed is tried again by the next build)."""
    if cat.get_meta(META_KEY, 1) >= imaging.PHASH_VERSION:
        return 0
    with cat.session() as s:
        rows = s.execute(
            select(File.content_id, File.path, File.size, File.mtime_ns)
            .join(Content, Content.id == File.content_id)
            .where(Content.format.not_in(OPAQUE_FORMATS))
            .order_by(File.content_id, File.path)
        ).all()
    paths: dict[int, list[Any]] = {}
    for cid, *row in rows:
        paths.setdefault(cid, []).append(row)
    new: dict[int, int | None] = {}
    unread = 0
    options = imaging.DecodeOptions.from_settings(settings)
    for cid, candidates in paths.items():
        done = False
        for path, size, mtime_ns in candidates:
            done, value = _rehash(path, size, mtime_ns, options)
            if done:
                if value is not False:
                    new[cid] = value
                break
        unread += not done
    for chunk in chunked(list(new.items())):
        with cat.session() as s:
            for cid, value in chunk:
                s.execute(update(Content).where(Content.id == cid).values(phash=value))
    if not unread:
        with cat.session() as s:
            Catalog.set_meta(s, META_KEY, imaging.PHASH_VERSION)
    return len(new)


def _rehash(
    path: str, size: int, mtime_ns: int, options: imaging.DecodeOptions
) -> tuple[bool, Any]:
    """(done, new hash): False as the hash when the picture has no transparency (unchanged);
    not done when the file cannot be read now or changed since it was indexed."""
    try:
        st = os.stat(path)
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            return False, False
        with files.open_regular(path) as fh, Image.open(fh) as head:
            if not imaging.has_alpha(head):
                return True, False
        img, _ = imaging.open_image(path, options)
        return True, imaging.perceptual_hash(img)
    except imaging.ImageError as exc:
        return exc.stage != "read", False  # undecodable now: keep the hash it had
    except UnidentifiedImageError:  # e.g. HEIC without pillow-heif now: keep the hash it had
        return True, False
    except OSError:
        return False, False
    except Exception:  # noqa: BLE001 - a decoder bug must not stop a build
        return True, False
