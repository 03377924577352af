"""Write a dedup report as JSON, CSV or a self-contained HTML gallery, and a quarantine script.

The quarantine script (`indexer.dedup.quarantine`) moves (never deletes) the non-kept files into
a quarantine folder, keeping their relative paths; it only prints its plan unless run with --apply.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from indexer.dedup.quarantine import QUARANTINE_TIERS, quarantine_script
from indexer.files import human_size
from indexer.thumbs import jpeg_thumbnail

__all__ = ["QUARANTINE_TIERS", "quarantine_script", "to_csv", "to_html", "to_json"]
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


def render_thumbnail(path: str, size: int = THUMB_SIZE) -> bytes | None:
    """A JPEG thumbnail of a file (EXIF orientation applied), or None if it cannot be read."""
    return jpeg_thumbnail(path, size, quality=80)


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


def describe_threshold(tier: str, threshold: float | int | None) -> str:
    """A tier's threshold in words, e.g. "pHash ≤ 10 bits apart" or "CLIP cosine ≥ 0.95"."""
    if tier == "exact":
        return "identical bytes"
    if tier == "near-identical":
        return f"pHash ≤ {threshold} bits apart (score ≥ {1 - float(threshold or 0) / 64:.3f})"
    return f"CLIP cosine ≥ {threshold}"


_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#f6f6f6;color:#222}
h2{margin-top:1.5em;border-bottom:1px solid #ccc}
table.summary td,table.summary th{padding:2px 10px;text-align:left}
.group{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.8em 1em;margin:1em 0}
.head{font-size:13px;color:#444}.tier{font-weight:bold;text-transform:uppercase}
.members{display:flex;flex-wrap:wrap;gap:12px;margin-top:.6em}
.member{width:210px;font-size:12px;border:3px solid transparent;border-radius:6px;padding:4px}
.member img{max-width:200px;max-height:200px;display:block;margin:auto}
.member.kept{border-color:#2a9d4b;background:#eef8f0}
.badge{display:inline-block;font-weight:bold;font-size:11px;padding:0 5px;border-radius:3px}
.kept .badge.keep{background:#2a9d4b;color:#fff}.badge.dup{background:#bbb;color:#fff}
.badge.protected{background:#2a6f9d;color:#fff}
.nopreview{width:200px;height:120px;background:#eee;color:#888;display:flex;
align-items:center;justify-content:center}
code{word-break:break-all;font-size:11px}
.resolved{color:#2a6f9d;font-weight:bold}
"""


def _resolved(group: dict[str, Any]) -> str:
    """The head's mark for a group shaped by `index decide` (keep or distinct), else ""."""
    if not group.get("resolved"):
        return ""
    why = html.escape(str(group.get("decision")))
    return f" · <span class='resolved'>resolved: your decision ({why})</span>"


def to_html(report: dict[str, Any], thumbs: dict[str, bytes | None] | None = None) -> str:
    """One self-contained HTML file: thumbnails inlined as data URIs, no external assets.

    `thumbs` maps a path to its JPEG thumbnail (None: no preview); without it they are made.
    """
    esc = html.escape
    groups = report["groups"]
    if thumbs is None:
        thumbs = thumbnails(m["path"] for g in groups for m in g["members"])
    uri = {
        p: "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        for p, data in thumbs.items()
        if data
    }
    counts = report.get("counts") or {}
    rows = "".join(f"<tr><th>{esc(t)}</th><td>{n} groups</td></tr>" for t, n in counts.items() if n)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width'>",
        f"<title>Duplicates · {len(groups)} groups</title><style>{_CSS}</style></head><body>",
        f"<h1>Duplicates: {len(groups)} groups</h1>",
        f"<table class='summary'>{rows}</table>",
        f"<p>Index <code>{esc(str(report.get('index')))}</code> · generated "
        f"{esc(str(report.get('generated_at')))} · thresholds "
        f"<code>{esc(json.dumps(report.get('thresholds')))}</code></p>",
        "<p>A picture pair belongs to the strongest tier that links it; a weaker group names "
        "the stronger groups it contains. The kept file is framed in green and marked KEEP.</p>",
    ]
    tier = None
    for g in groups:
        if g["tier"] != tier:
            tier = g["tier"]
            parts.append(f"<h2 id='tier-{esc(tier)}'>{esc(tier)}</h2>")
        contains = ", ".join(f"<a href='#g{c}'>#{c}</a>" for c in g.get("contains") or [])
        parts.append(
            f"<section class='group' id='g{g['id']}' data-tier='{esc(g['tier'])}'>"
            f"<div class='head'><span class='tier'>{esc(g['tier'])}</span> · group #{g['id']}"
            f" · {len(g['members'])} files · similarity {g['min_score']:.4f}–"
            f"{g['max_score']:.4f} · {esc(describe_threshold(g['tier'], g['threshold']))}"
            + (f" · contains {contains}" if contains else "")
            + _resolved(g)
            + f"</div><div>keep <code>{esc(g['keep'])}</code>: {esc(g['reason'])}</div>"
            "<div class='members'>"
        )
        members = sorted(g["members"], key=lambda m: m["path"] != g["keep"])
        for m in members:
            kept = m["path"] == g["keep"]
            src = uri.get(m["path"])
            img = (
                f"<img src='{src}' alt='{esc(os.path.basename(m['path']))}'>"
                if src
                else "<div class='nopreview'>no preview</div>"
            )
            badges = (
                "<span class='badge keep'>KEEP</span>"
                if kept
                else "<span class='badge dup'>duplicate</span>"
            )
            if m.get("protected"):
                badges += " <span class='badge protected'>protected</span>"
            parts.append(
                f"<div class='member{' kept' if kept else ''}' data-kept='{str(kept).lower()}'>"
                f"{img}{badges}<br><code>{esc(m['path'])}</code><br>"
                f"{m.get('width')}×{m.get('height')} · {esc(str(m.get('format')))} · "
                f"{human_size(m.get('size'))}<br>{esc(m.get('taken_at') or 'no date taken')}"
                f" · score {m.get('score'):.4f}</div>"
            )
        parts.append("</div></section>")
    if not groups:
        parts.append("<p>No duplicates at these thresholds.</p>")
    parts.append("</body></html>")
    return "".join(parts)
