"""Write a dedup report as JSON, CSV or a self-contained HTML gallery, and a quarantine script.

The quarantine script moves (never deletes) every non-kept file into a quarantine folder,
keeping relative paths; it only prints its plan unless run with --apply.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from indexer import imaging

QUARANTINE_TIERS = ("exact", "near-identical", "near-duplicate")


def write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    cols = ["group", "tier", "path", "size", "width", "height", "format", "taken_at", "score"]
    writer = csv.writer(buf)
    writer.writerow([*cols, "keep", "reason"])
    for g in report["groups"]:
        for m in g["members"]:
            kept = m["path"] == g["keep"]
            writer.writerow(
                [
                    g["id"],
                    g["tier"],
                    *(m.get(c) for c in cols[2:]),
                    kept,
                    g["reason"] if kept else "",
                ]
            )
    return buf.getvalue()


def _thumb(path: str, size: int = 220) -> str:
    try:
        img, _ = imaging.open_image(path, draft_to=size)
        buf = io.BytesIO()
        imaging.thumbnail(img, size).save(buf, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    except (imaging.ImageError, OSError):
        return ""


def to_html(report: dict[str, Any]) -> str:
    """A single HTML file: thumbnails inlined as data URIs, no external assets."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>photo-index duplicates</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:1.5em;background:#fafafa}"
        ".group{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1em;margin:1em 0}"
        ".members{display:flex;flex-wrap:wrap;gap:12px}.m{width:230px;font-size:12px}"
        ".m img{max-width:220px;max-height:220px;display:block;border:3px solid transparent}"
        ".kept img{border-color:#2a9d4b}.kept .badge{color:#2a9d4b;font-weight:bold}"
        ".tier{font-weight:bold;text-transform:uppercase;font-size:12px;color:#555}"
        "code{word-break:break-all}</style></head><body>",
        f"<h1>Duplicates</h1><p>{len(report['groups'])} groups · index {esc(report['index'])}"
        f" · thresholds {esc(json.dumps(report['thresholds']))}"
        f" · {esc(report['generated_at'])}</p>",
    ]
    for g in report["groups"]:
        parts.append(
            f"<div class='group' data-tier='{esc(g['tier'])}' id='g{g['id']}'>"
            f"<div class='tier'>{esc(g['tier'])} · group {g['id']} · similarity "
            f"{g['min_score']:.4f}–{g['max_score']:.4f} · "
            f"threshold {esc(str(g['threshold']))}</div>"
            f"<p>keep <code>{esc(g['keep'])}</code>: {esc(g['reason'])}</p><div class='members'>"
        )
        for m in g["members"]:
            kept = m["path"] == g["keep"]
            src = _thumb(m["path"])
            img = f"<img src='{src}' alt=''>" if src else "<div>(no preview)</div>"
            parts.append(
                f"<div class='m{' kept' if kept else ''}'>{img}"
                f"<span class='badge'>{'KEEP' if kept else ''}</span> "
                f"<code>{esc(m['path'])}</code><br>{m.get('width')}×{m.get('height')} · "
                f"{esc(str(m.get('format')))} · {m.get('size')} bytes · "
                f"{esc(m.get('taken_at') or 'no date')} · score {m.get('score')}</div>"
            )
        parts.append("</div></div>")
    parts.append("</body></html>")
    return "".join(parts)


def quarantine_plan(report: dict[str, Any], tiers: tuple[str, ...] = QUARANTINE_TIERS) -> list:
    """Files to move: non-kept members of each file's widest group among `tiers`."""
    widest: dict[str, dict[str, Any]] = {}
    order = {t: i for i, t in enumerate(("exact", "near-identical", "near-duplicate", "similar"))}
    for g in report["groups"]:
        if g["tier"] not in tiers:
            continue
        for m in g["members"]:
            cur = widest.get(m["path"])
            if cur is None or order[g["tier"]] > order[cur["tier"]]:
                widest[m["path"]] = g
    plan = [
        {"path": p, "group": g["id"], "keep": g["keep"]}
        for p, g in widest.items()
        if g["keep"] != p
    ]
    return sorted(plan, key=lambda x: x["path"])


_SCRIPT = '''#!/usr/bin/env python3
"""Quarantine duplicates found by `index dedup` (generated {generated_at}).

Moves each non-kept file into QUARANTINE/<path relative to {root!r}>. Never deletes.
Without --apply it only prints what it would do. Files that changed size or vanished since
the report are skipped; an existing file at the destination is never overwritten.

    python3 {name} [--apply] [QUARANTINE]     (default QUARANTINE: {default_dest!r})
"""
import json, os, shutil, sys

ROOT = {root!r}
MOVES = json.loads({moves!r})

def main(argv):
    apply = "--apply" in argv
    rest = [a for a in argv if a != "--apply"]
    dest_root = os.path.abspath(rest[0] if rest else {default_dest!r})
    moved = skipped = 0
    for item in MOVES:
        src = item["path"]
        dst = os.path.join(dest_root, os.path.relpath(src, ROOT))
        if not os.path.isfile(src) or os.path.getsize(src) != item["size"]:
            print("skip (missing or changed):", src)
            skipped += 1
            continue
        if os.path.exists(dst):
            print("skip (destination exists):", dst)
            skipped += 1
            continue
        print(("move " if apply else "would move ") + src + " -> " + dst)
        if apply:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.move(src, dst)
        moved += 1
    hint = "" if apply else "; run with --apply to move"
    print("moved" if apply else "would move", moved, "files;", skipped, "skipped" + hint)

if __name__ == "__main__":
    main(sys.argv[1:])
'''


def quarantine_script(
    report: dict[str, Any], name: str = "quarantine.py", tiers: tuple[str, ...] = QUARANTINE_TIERS
) -> str:
    """A self-contained Python script for the plan (paths travel as JSON: any name is safe)."""
    plan = quarantine_plan(report, tiers)
    sizes = {m["path"]: m["size"] for g in report["groups"] for m in g["members"]}
    moves = [{"path": p["path"], "size": sizes[p["path"]]} for p in plan]
    paths = [m["path"] for g in report["groups"] for m in g["members"]]
    root = os.path.commonpath(paths) if paths else "/"
    if paths and os.path.isfile(root):
        root = os.path.dirname(root)
    return _SCRIPT.format(
        generated_at=report["generated_at"],
        root=root,
        name=name,
        moves=json.dumps(moves, ensure_ascii=False),
        default_dest=root.rstrip(os.sep) + "-quarantine",  # beside, never inside, the photos
    )
