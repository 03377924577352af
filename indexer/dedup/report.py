"""Write a dedup report as JSON, CSV or a self-contained HTML gallery, and a quarantine script.

The quarantine script moves (never deletes) the non-kept files into a quarantine folder,
keeping their relative paths; it only prints its plan unless run with --apply.
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

from indexer.files import human_size
from indexer.thumbs import jpeg_thumbnail

QUARANTINE_TIERS = ("exact", "near-identical", "near-duplicate")
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
"""


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


def quarantine_script(
    report: dict[str, Any], name: str = "quarantine.py", tiers: Iterable[str] = QUARANTINE_TIERS
) -> str:
    """A self-contained Python script that moves non-kept files away (paths travel as JSON)."""
    groups = [
        {
            "id": g["id"],
            "tier": g["tier"],
            "keep": g["keep"],
            "members": [[m["path"], m.get("size"), m.get("mtime_ns")] for m in g["members"]],
        }
        for g in report["groups"]
    ]
    protected = sorted(
        {m["path"] for g in report["groups"] for m in g["members"] if m.get("protected")}
    )
    paths = sorted({m[0] for g in groups for m in g["members"]})
    root = os.path.commonpath(paths) if paths else os.sep
    if root in paths:  # one file: its folder
        root = os.path.dirname(root)
    dest = root.rstrip(os.sep) + "-quarantine" if root != os.sep else "/quarantine"
    values = {
        "__NAME__": name,
        "__GENERATED__": str(report.get("generated_at")),
        "__ROOT__": repr(root),
        "__DEST__": repr(dest),
        "__TIERS__": repr(tuple(tiers)),
        "__GROUPS__": repr(json.dumps(groups, ensure_ascii=True)),
        "__PROTECTED__": repr(json.dumps(protected, ensure_ascii=True)),
    }
    text = _SCRIPT
    for key, value in values.items():
        text = text.replace(key, value)
    return text


_SCRIPT = r'''#!/usr/bin/env python3
"""Quarantine the duplicates found by `index dedup` (report of __GENERATED__).

Moves each non-kept file of the chosen tiers' groups into DEST/<its path relative to ROOT>.
It never deletes and never overwrites. Without --apply it only prints what it would do.
A file is skipped when it vanished or changed (size or modification time) since the report,
when it lies in a protected (--prefer) folder, or when its group's kept copy is missing.

    python3 __NAME__ [--apply] [--tiers exact,near-identical,near-duplicate] [DEST]
    python3 __NAME__ --restore [--apply] [DEST]     (moves quarantined files back)

DEST defaults to a folder beside ROOT; ROOT is printed by --help.
"""
import argparse
import json
import os
import shutil
import stat
import sys

ROOT = __ROOT__
DEFAULT_DEST = __DEST__
DEFAULT_TIERS = __TIERS__
ORDER = ("exact", "near-identical", "near-duplicate", "similar")
GROUPS = json.loads(__GROUPS__)
PROTECTED = set(json.loads(__PROTECTED__))


def show(path):
    return path if path.isprintable() else repr(path)


def unchanged(path, size, mtime_ns):
    """The regular file the report saw: same size and modification time."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
        return False
    return mtime_ns is None or st.st_mtime_ns == mtime_ns


def plan(tiers):
    """(member, group): every non-kept member of its widest group among `tiers`."""
    widest = {}
    for g in GROUPS:
        if g["tier"] not in tiers:
            continue
        for member in g["members"]:
            cur = widest.get(member[0])
            if cur is None or ORDER.index(g["tier"]) > ORDER.index(cur[1]["tier"]):
                widest[member[0]] = (member, g)
    moves = []
    for path in sorted(widest):
        member, g = widest[path]
        if path != g["keep"]:
            moves.append((member, g))
    return moves


def move(src, dst):
    """Move without ever replacing a file: hard link + unlink, else exclusive copy + unlink."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # another file system, or no hard links there
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        shutil.copystat(src, dst)
        if os.path.getsize(dst) != os.path.getsize(src):
            os.unlink(dst)
            raise OSError("copy is incomplete") from None
    os.unlink(src)


def main(argv):
    parser = argparse.ArgumentParser(
        description="Move non-kept duplicates into a quarantine folder (ROOT: %s)." % show(ROOT)
    )
    parser.add_argument("dest", nargs="?", default=DEFAULT_DEST, help="quarantine folder")
    parser.add_argument("--apply", action="store_true", help="move (default: only print)")
    parser.add_argument("--tiers", default=",".join(DEFAULT_TIERS), help="groups to act on")
    parser.add_argument("--restore", action="store_true", help="move quarantined files back")
    args = parser.parse_args(argv)
    dest = os.path.abspath(args.dest)
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = [t for t in tiers if t not in ORDER]
    if unknown:
        parser.error("unknown tier(s): %s" % ", ".join(unknown))
    verb = "move" if args.apply else "would move"
    done = skipped = failed = 0
    kept_ok = {}
    for member, g in plan(tiers):
        src, size, mtime_ns = member
        dst = os.path.join(dest, os.path.relpath(src, ROOT))
        if args.restore:
            src, dst = dst, src
            if not os.path.isfile(src):
                continue
            if os.path.lexists(dst):
                print("skip (a file is back at the original path):", show(dst))
                skipped += 1
                continue
        else:
            if src in PROTECTED:
                print("skip (protected folder):", show(src))
                skipped += 1
                continue
            if not unchanged(src, size, mtime_ns):
                print("skip (missing or changed since the report):", show(src))
                skipped += 1
                continue
            if g["id"] not in kept_ok:
                kept = next(m for m in g["members"] if m[0] == g["keep"])
                kept_ok[g["id"]] = unchanged(*kept)
            if not kept_ok[g["id"]]:
                print("skip (kept copy missing or changed: %s):" % show(g["keep"]), show(src))
                skipped += 1
                continue
            if os.path.lexists(dst):
                print("skip (already in quarantine; not overwritten):", show(dst))
                skipped += 1
                continue
        print("%s %s -> %s" % (verb, show(src), show(dst)))
        if args.apply:
            try:
                move(src, dst)
            except OSError as exc:
                print("failed:", show(src), exc, file=sys.stderr)
                failed += 1
                continue
        done += 1
    hint = "" if args.apply else " (dry run: add --apply to move)"
    print(
        "%s %d files; %d skipped; %d failed%s"
        % ("moved" if args.apply else "would move", done, skipped, failed, hint)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''
