"""`index stats` for people: counts, sizes in KB/MB/GB and the FAISS index type in words, from
the same dictionary `--json` prints (indexer.verify.stats)."""

from __future__ import annotations

import re
from typing import Any

from indexer.files import human_size
from indexer.text import plural, printable

_IVF = re.compile(r"IVF(?P<nlist>\d+),(?P<codes>Flat|SQ8|PQ(?P<m>\d+))")
_CATALOG = ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm")
_VECTORS = ("vectors.faiss", "vectors.json")


def index_words(index_type: str | None, nprobe: int | None) -> str:
    """'exact: every vector compared', 'clustered: 1,024 lists, 16 searched per query, vectors
    in 8 bits' ... (the FAISS factory string in brackets)."""
    if not index_type:
        return "none yet (the next index build makes it)"
    if index_type == "IDMap2,Flat":
        return f"exact: every vector compared ({index_type})"
    found = _IVF.fullmatch(index_type)
    if found is None:
        return index_type
    codes = {"Flat": "whole vectors", "SQ8": "vectors in 8 bits a number"}.get(
        found["codes"], f"vectors compressed to {found['m']} bytes"
    )
    searched = f", {nprobe:,} searched per query" if nprobe else ""
    lists = plural(int(found["nlist"]), "list")
    return f"clustered: {lists}{searched}, {codes} ({index_type})"


def stats_lines(d: dict[str, Any]) -> list[str]:
    """The human `index stats`: one labelled line per subject, no Python reprs."""
    lines = [("index", printable(d["index"]))]
    kept = (
        f"; {plural(d['tombstones'], 'tombstone')} kept for relinking"
        if d.get("tombstones")
        else ""
    )
    lines.append(
        ("pictures", f"{d['images']:,} ({plural(d['vectors'], 'vector')} searchable{kept})")
    )
    lines.append(
        (
            "failures",
            f"{d['failures']:,}" + (" (index failures lists them)" if d["failures"] else ""),
        )
    )
    search = index_words(d.get("index_type"), d.get("nprobe"))
    if d.get("recall_at_10") is not None:
        search += f"; recall@10 {d['recall_at_10']:.3f}"
    if d.get("search_ms") is not None:
        search += f", {d['search_ms']:.1f} ms a query"
    lines.append(("search", search))
    if d.get("encoder"):
        lines.append(("encoder", _encoder(d["encoder"])))
    if d.get("last_build"):
        b = d["last_build"]
        done = " · ".join(f"{b[k]:,} {k}" for k in ("new", "changed", "moved", "deleted", "failed"))
        lines.append(("last build", f"{done} · {b['embedded']:,} embedded in {b['seconds']:.1f} s"))
    lines.append(("on disk", _disk(d.get("disk_bytes") or {})))
    return [f"{label:>10}  {value}" for label, value in lines]


def _encoder(e: dict[str, Any]) -> str:
    sha = str(e.get("weights_sha256") or "")[:12]
    parts = [str(e.get("architecture") or "unknown network"), f"{e.get('dim')}-d vectors"]
    if e.get("layout"):
        parts.append(f"{e['layout']} weights")
    if sha:
        parts.append(f"sha256 {sha}…")
    return printable(" · ".join(parts))


def _disk(sizes: dict[str, int]) -> str:
    catalog = sum(sizes.get(n, 0) for n in _CATALOG)
    vectors = sum(sizes.get(n, 0) for n in _VECTORS)
    total = sizes.get("total", catalog + vectors)
    other = max(0, total - catalog - vectors)
    return (
        f"{human_size(total)} (catalog {human_size(catalog)}, FAISS file {human_size(vectors)}, "
        f"thumbnails and the rest {human_size(other)})"
    )
