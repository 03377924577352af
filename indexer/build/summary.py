"""What one `index build` did: the counts, the index it left, where the time went, and the
warnings; `as_dict()` is the `index build --json` contract."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BuildSummary:
    """What a build did; `as_dict()` is the `index build --json` contract."""

    new: int = 0  # new paths indexed by this run (a new file that failed counts in failed only)
    changed: int = 0  # indexed paths whose file changed and was indexed again
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0  # files this run tried and could not index (new or retried ledger entries)
    embedded: int = 0
    skipped: int = 0  # not pictures, skipped quietly: the total of skipped_kinds
    skipped_kinds: dict[str, int] = field(default_factory=dict)  # kinds.VIDEO, ... -> count
    ledger: int = 0  # files in the failure ledger after this run, old entries included
    images: int = 0
    vectors: int = 0
    index_type: str = ""
    nlist: int | None = None
    nprobe: int | None = None
    recall_at_10: float | None = None
    search_ms: float | None = None
    seconds: float = 0.0
    images_per_second: float = 0.0
    index: str = ""
    to_embed: int = 0  # images this run had to embed (`embedded` of them were)
    interrupted: str | None = None  # "SIGINT" / "SIGTERM": stopped early, the rest is for next run
    # seconds per stage: load_encoder, scan, plan, embed (decode_wait, encoding, encode_wait,
    # catalog_writes within it), index; which one bounds a build
    stages: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. a root not there: exit code 3
    decoder_warnings: int = 0  # pictures indexed whose decoder warned (one `warning:` line each)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
