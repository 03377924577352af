"""`index dedup`: duplicate groups in tiers, which copy to keep, and reports to act on.

Public API: `dedup(index_dir, options) -> Report`; `Report.write(path)` picks JSON, CSV or
HTML by extension; `Report.quarantine_script()` returns the mover script.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from indexer.atomic import write_atomic
from indexer.build.rehash import META_KEY as PHASH_META
from indexer.dedup import candidates
from indexer.dedup import report as _report
from indexer.dedup.decisions import load as load_decisions
from indexer.dedup.evidence import Looks
from indexer.dedup.keep import DEFAULT_KEEP, KeepRuleError, parse_rule
from indexer.dedup.tiers import TIERS, DedupOptions, Group, find_groups
from indexer.imaging import DecodeOptions
from indexer.store.catalog import Catalog
from indexer.store.home import require_content
from indexer.thumbs import thumbnail_bytes

__all__ = ["DEFAULT_KEEP", "TIERS", "DedupOptions", "Group", "KeepRuleError", "Report", "dedup"]
FORMATS = {"json": "json", "csv": "csv", "html": "html", "htm": "html"}


@dataclass
class Report:
    """Groups of every reported tier plus the thresholds used (the JSON contract)."""

    groups: list[Group] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    index: str = ""
    generated_at: str = ""
    seconds: float = 0.0
    search: dict[str, Any] = field(default_factory=dict)
    content_ids: dict[str, int] = field(default_factory=dict, repr=False)  # path → content id
    decode: DecodeOptions = field(default_factory=DecodeOptions, repr=False)  # for thumbnails

    def as_dict(self) -> dict[str, Any]:
        """The JSON report (schema in docs/dedup.md)."""
        return {
            "groups": [g.as_dict() for g in self.groups],
            "counts": {t: sum(g.tier == t for g in self.groups) for t in TIERS},
            "thresholds": self.thresholds,
            "index": self.index,
            "generated_at": self.generated_at,
            "seconds": self.seconds,
            "search": self.search,
        }

    def render(self, fmt: str) -> str:
        """The report as "json", "csv" or "html" text."""
        data = self.as_dict()
        if fmt == "json":
            return _report.to_json(data)
        if fmt == "csv":
            return _report.to_csv(data)
        if fmt == "html":
            return _report.to_html(data, self.thumbnails(_report.THUMB_GROUPS))
        raise ValueError(f"unknown report format {fmt!r}: use html, json or csv")

    def write(self, path: str | Path) -> None:
        """Write by extension (.json, .csv, .html/.htm), atomically."""
        fmt = FORMATS.get(Path(path).suffix.lower().lstrip("."))
        if fmt is None:
            raise ValueError(f"{path}: unknown report type; name it .html, .json or .csv")
        write_atomic(path, self.render(fmt))

    def thumbnails(self, groups: int | None = None) -> dict[str, bytes | None]:
        """JPEG thumbnails of the members of the first `groups` groups (None: all), from the
        index's thumbnail cache when it is there (the HTML report inlines only those)."""
        paths = [m["path"] for g in self.groups[:groups] for m in g.members]
        size, options = _report.THUMB_SIZE, self.decode
        render = partial(_report.render_thumbnail, size=size, options=options)
        if not self.index or not self.content_ids:
            return _report.thumbnails(paths, render)
        try:
            cat = Catalog(self.index, readonly=True)
        except Exception:  # noqa: BLE001 - the index moved away: read the files themselves
            return _report.thumbnails(paths, render)
        try:

            def make(path: str) -> bytes | None:
                cid = self.content_ids.get(path)
                data = None if cid is None else thumbnail_bytes(cat, cid, size, options)
                return data if data is not None else render(path)

            return _report.thumbnails(paths, make)
        finally:
            cat.close()

    def quarantine_script(self, name: str = "quarantine.py") -> str:
        """A Python script that moves the non-kept files into a quarantine folder."""
        return _report.quarantine_script(self.as_dict(), name)


def dedup(
    index_dir: str | Path,
    options: DedupOptions | None = None,
    decode: DecodeOptions | None = None,
) -> Report:
    """Find duplicate groups in the index at `index_dir` (read-only; works during a build);
    `decode` (`DecodeOptions.from_settings`) limits the decodes of the HTML report's thumbnails.

    Raises CatalogError when there is no index, ValueError/KeepRuleError for bad options.
    """
    options = options or DedupOptions()
    options.validate()
    parse_rule(options.keep)  # fail fast on a bad --keep
    started = time.perf_counter()
    cat = Catalog(index_dir, readonly=True)
    search: dict[str, Any] = {}
    try:  # arrays first; the records (one dict per path) only of pictures some tier may group
        require_content(cat, needs=("images",))
        coll = candidates.read(cat)
        decisions = load_decisions(cat)
        phash_version = cat.get_meta(PHASH_META, 1)
        lent = candidates.lent_cells(index_dir)
        pairs = candidates.tier_pairs(coll, options, search, lent)
        del lent
        coll.vecs = coll.vecs[:0]  # the float16 copy is done with: scores come from the catalog
        wanted = candidates.involved(coll, pairs)
        records = cat.records(wanted)
        ids, vecs = cat.vectors_for(wanted)
    finally:
        cat.close()
    pairs = candidates.rescore(pairs, ids, vecs, options, search)
    cid_of = {r["path"]: int(r["content_id"]) for r in records}
    looks = Looks(decode or DecodeOptions())  # the grouped files are read: copies or edits
    groups = find_groups(records, ids, vecs, options, search, decisions, looks, pairs)
    search["exact"] = {"contents": coll.contents, "files": coll.files}  # not only those read
    search["near-identical"]["phash_version"] = phash_version  # 1: made before alpha/flat rules
    return Report(
        groups=groups,
        thresholds=options.thresholds(),
        index=str(Path(index_dir).absolute()),
        generated_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 3),
        search=search,
        content_ids={m["path"]: cid_of[m["path"]] for g in groups for m in g.members},
        decode=decode or DecodeOptions(),
    )
