"""Write a dedup report as JSON, CSV or a self-contained HTML gallery (`gallery.py`), and a
quarantine script.

The quarantine script (`indexer.dedup.quarantine`) moves (never deletes) the non-kept files into
a quarantine folder, keeping their relative paths; it only prints its plan unless run with --apply.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from indexer.dedup.gallery import THUMB_GROUPS, to_html
from indexer.dedup.quarantine import QUARANTINE_TIERS, quarantine_script
from indexer.dedup.review import describe_threshold
from indexer.imaging import DecodeOptions
from indexer.thumbs import jpeg_thumbnail

__all__ = [
    "QUARANTINE_TIERS",
    "THUMB_GROUPS",
    "describe_threshold",
    "quarantine_script",
    "to_csv",
    "to_html",
    "to_json",
]
CSV_COLUMNS = ("group", "tier", "path", "size", "width", "height", "format", "taken_at", "score")
THUMB_SIZE = 200


def to_json(report: dict[str, Any]) -> str:
    """The report as indented JSON (schema in docs/dedup.md)."""
    return json.dumps(report, indent=2, ensure_ascii=False)


def to_csv(report: dict[str, Any]) -> str:
    """One row per member: group, tier, path, ..., score, keep (true/false), the group's reason."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*CSV_COLUMNS, "keep", "reason"])
    for g in report["groups"]:
        for m in g["members"]:
            writer.writerow(
                [
                    g["id"],
                    g["tier"],
                    *(m.get(c) for c in CSV_COLUMNS[2:]),
                    "true" if m["path"] == g["keep"] else "false",
                    g["reason"],
                ]
            )
    return buf.getvalue()


def render_thumbnail(
    path: str, size: int = THUMB_SIZE, options: DecodeOptions = DecodeOptions()
) -> bytes | None:
    """A JPEG thumbnail of a file (EXIF orientation applied), or None if it cannot be read."""
    return jpeg_thumbnail(path, size, quality=80, options=options)


def thumbnails(
    paths: Iterable[str],
    make: Callable[[str], bytes | None] = render_thumbnail,
    workers: int | None = None,
) -> dict[str, bytes | None]:
    """Thumbnails of many files in a thread pool (decoders release the GIL)."""
    unique = sorted(set(paths))
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(unique, pool.map(make, unique), strict=True))
