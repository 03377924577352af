"""`index dedup`: duplicate groups in tiers, which copy to keep, and reports to act on.

Public API: `dedup(index_dir, options) -> Report`; `Report.write(path)` picks JSON, CSV or
HTML by extension; `Report.quarantine_script()` returns the mover script.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from indexer.catalog import Catalog
from indexer.dedup import report as _report
from indexer.dedup.keep import DEFAULT_KEEP, KeepRuleError, parse_rule
from indexer.dedup.tiers import TIERS, DedupOptions, Group, find_groups

__all__ = ["DEFAULT_KEEP", "TIERS", "DedupOptions", "Group", "KeepRuleError", "Report", "dedup"]


@dataclass
class Report:
    """Groups of every reported tier plus the thresholds used (the JSON contract)."""

    groups: list[Group] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    index: str = ""
    generated_at: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        counts = {t: sum(g.tier == t for g in self.groups) for t in TIERS}
        return {
            "groups": [g.as_dict() for g in self.groups],
            "counts": counts,
            "thresholds": self.thresholds,
            "index": self.index,
            "generated_at": self.generated_at,
            "seconds": self.seconds,
        }

    def render(self, fmt: str) -> str:
        data = self.as_dict()
        writers = {"json": _report.to_json, "csv": _report.to_csv, "html": _report.to_html}
        return writers[fmt](data)

    def write(self, path: str | Path) -> None:
        """Write by extension (.json, .csv, .html/.htm), atomically."""
        suffix = Path(path).suffix.lower().lstrip(".")
        fmt = {"htm": "html"}.get(suffix, suffix)
        if fmt not in ("json", "csv", "html"):
            raise ValueError(f"{path}: unknown report type; use .html, .json or .csv")
        _report.write_atomic(path, self.render(fmt))

    def quarantine_script(self, name: str = "quarantine.py") -> str:
        return _report.quarantine_script(self.as_dict(), name)


def dedup(index_dir: str | Path, options: DedupOptions | None = None) -> Report:
    """Find duplicate groups in the index at `index_dir` (read-only; works during a build)."""
    options = options or DedupOptions()
    parse_rule(options.keep)  # fail fast on a bad --keep
    started = time.perf_counter()
    cat = Catalog(index_dir, readonly=True)
    try:
        records = cat.records()
        ids, vecs = cat.all_vectors()
    finally:
        cat.close()
    groups = find_groups(records, ids, vecs, options)
    thresholds = {k: v for k, v in asdict(options).items() if k in ("hamming", "near_duplicate")}
    thresholds["similar"] = options.similar
    return Report(
        groups=groups,
        thresholds=thresholds,
        index=str(Path(index_dir).absolute()),
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        seconds=round(time.perf_counter() - started, 3),
    )
