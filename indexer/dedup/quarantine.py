"""The quarantine script: a self-contained Python file that moves non-kept duplicates away.

Its code is a constant; its plan (root, default destination, groups with the sizes and times the
report saw, protected files, its own name) is one base64 JSON blob decoded once at run time, and
every path in it is the base64 of the path's bytes. No file name ever becomes code text, and
names that are not UTF-8 round-trip exactly.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import re
from collections.abc import Collection, Iterable
from typing import Any

from indexer.text import printable

QUARANTINE_TIERS = ("exact", "near-identical")  # near-duplicate only when named in --tiers
MOVED_RELATIONS = ("copies", "pair")  # edits (copies.py) only with --include-edits
_BLOB = re.compile(r"[A-Za-z0-9+/=\n]*")


def _b64(path: str) -> str:
    """A path as the base64 of its bytes (surrogate-escaped names become their raw bytes)."""
    return base64.b64encode(os.fsencode(path)).decode("ascii")


def _roots(paths: list[str], root: str) -> list[str]:
    """The folders a destination must stay out of: the common root, or, when that is `/`,
    the top folders holding the report's files (a quarantine there would be indexed again)."""
    if root != os.sep:
        return [root]
    tops = sorted({os.path.dirname(p) for p in paths})
    return [d for i, d in enumerate(tops) if not any(_inside(d, t) for t in tops[:i])]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def plan(report: dict[str, Any], name: str, tiers: Iterable[str]) -> dict[str, Any]:
    """What the script acts on, as JSON-ready data: every path base64-encoded."""
    paths = sorted({m["path"] for g in report["groups"] for m in g["members"]})
    root = os.path.commonpath(paths) if paths else os.sep
    if root in paths:  # one file: its folder
        root = os.path.dirname(root)
    dest = root.rstrip(os.sep) + "-quarantine" if root != os.sep else "/quarantine"
    return {
        "name": str(name),
        "generated": str(report.get("generated_at")),
        "root": _b64(root),
        "roots": [_b64(r) for r in _roots(paths, root)],
        "dest": _b64(dest),
        "tiers": list(tiers),
        "groups": [
            {
                "id": g["id"],
                "tier": g["tier"],
                "relation": g.get("relation"),
                "keep": _b64(g["keep"]),
                "members": [
                    [_b64(m["path"]), m.get("size"), m.get("mtime_ns")] for m in g["members"]
                ],
            }
            for g in report["groups"]
        ],
        "protected": sorted(
            {_b64(m["path"]) for g in report["groups"] for m in g["members"] if m.get("protected")}
        ),
        "pairs": sorted(
            {_b64(m["path"]) for g in report["groups"] for m in g["members"] if m.get("pair")}
        ),
    }


def movable(
    groups: list[dict], tiers: Collection[str], relations: Collection[str] = MOVED_RELATIONS
) -> list[tuple]:
    """(member, group) for each file the quarantine moves: every non-kept member of its widest
    group among `tiers` whose relation is in `relations` (edits only when named). Members are
    sequences whose first item is the path; the same code runs in the script and the reports."""
    order = ("exact", "near-identical", "near-duplicate", "similar")
    kinds = ("copies", "pair", "edits")
    widest = {}
    for g in groups:
        kind = g.get("relation") or "copies"
        if g["tier"] not in tiers or kind not in relations:
            continue
        rank = (order.index(g["tier"]), kinds.index(kind) if kind in kinds else 0)
        for member in g["members"]:
            cur = widest.get(member[0])
            if cur is None or rank > cur[0]:
                widest[member[0]] = (rank, member, g)
    return [(widest[p][1], widest[p][2]) for p in sorted(widest) if p != widest[p][2]["keep"]]


def quarantine_script(
    report: dict[str, Any], name: str = "quarantine.py", tiers: Iterable[str] = QUARANTINE_TIERS
) -> str:
    """The script's constant code followed by its plan as one base64 string literal."""
    data = json.dumps(plan(report, name, tiers), ensure_ascii=True).encode("ascii")
    blob = base64.encodebytes(data).decode("ascii")  # 76-character lines
    if not _BLOB.fullmatch(blob):  # never: base64 has no quote, backslash or brace
        raise ValueError("quarantine plan is not plain base64")
    return (
        _HEAD
        + inspect.getsource(printable)
        + "\n\n"
        + inspect.getsource(movable)
        + _BODY
        + '\n\nPLAN = """\n'
        + blob
        + '"""\n\n\nif __name__ == "__main__":\n    sys.exit(main(sys.argv[1:]))\n'
    )


_HEAD = r'''#!/usr/bin/env python3
"""Quarantine the duplicates found by `index dedup` (written by photo-index).

Moves each non-kept copy of the chosen tiers' groups into DEST/<its path relative to ROOT>:
exact and near-identical by default; near-duplicate only when --tiers names it; edits (a
crop, a B&W or brightened version...) only with --include-edits. It never
deletes and never overwrites, and refuses a DEST inside the indexed folders. Without --apply
it only prints what it would do, one line per file naming its tier and the kept copy.
A file is skipped when it vanished or changed (size or modification time) since the report,
when it lies in a protected (--prefer) folder, when it is half of a RAW+JPEG pair (unless
--include-pairs), or when its group's kept copy is missing.

    python3 THIS_SCRIPT [--apply] [--tiers exact,near-identical[,near-duplicate]]
                        [--include-edits] [--include-pairs] [DEST]
    python3 THIS_SCRIPT --restore [--apply] [DEST]     (moves quarantined files back)

DEST defaults to a folder beside ROOT; --help prints ROOT and DEST. The plan is the base64
JSON at the end of this file (paths are base64 of their bytes); nothing in it is code.
"""
import argparse
import base64
import json
from collections.abc import Collection
import os
import shutil
import stat
import sys

ORDER = ("exact", "near-identical", "near-duplicate", "similar")
MOVED_RELATIONS = ("copies", "pair")


'''

_BODY = r'''

def load_plan():
    """The plan at the end of this file, decoded once; paths become bytes (exact names)."""
    data = json.loads(base64.b64decode(PLAN))
    raw = lambda text: base64.b64decode(text)  # noqa: E731
    for g in data["groups"]:
        g["keep"] = raw(g["keep"])
        g["members"] = [(raw(p), size, mtime_ns) for p, size, mtime_ns in g["members"]]
    data["root"], data["dest"] = raw(data["root"]), raw(data["dest"])
    data["roots"] = [raw(r) for r in data.get("roots", [])]
    data["protected"] = {raw(p) for p in data["protected"]}
    data["pairs"] = {raw(p) for p in data.get("pairs", [])}
    return data


def show(path):
    """A path (bytes) for the terminal: control characters and undecodable bytes escaped."""
    return printable(path.decode("utf-8", "surrogateescape"))


def unchanged(path, size, mtime_ns):
    """The regular file the report saw: same size and modification time."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
        return False
    return mtime_ns is None or st.st_mtime_ns == mtime_ns


def move(src, dst):
    """Move without ever replacing a file: hard link + unlink, else exclusive copy + unlink."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # another file system, or no hard links there
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as fin:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError("not a regular file") from None
            with open(dst, "xb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        shutil.copystat(src, dst)
        if os.path.getsize(dst) != os.path.getsize(src):
            os.unlink(dst)
            raise OSError("copy is incomplete") from None
    os.unlink(src)


class Parser(argparse.ArgumentParser):
    """--help ends with the plan's ROOT and DEST (printed as data, never formatted)."""

    info = ""

    def format_help(self):
        return argparse.ArgumentParser.format_help(self) + self.info


def parse(argv, data):
    parser = Parser(description="Move non-kept duplicates into a quarantine folder.")
    parser.info = "\nROOT: %s\nDEST (default): %s\nreport of %s; script %s\n" % (
        show(data["root"]),
        show(data["dest"]),
        printable(data["generated"]),
        printable(data["name"]),
    )
    parser.add_argument("dest", nargs="?", default=None, help="quarantine folder")
    parser.add_argument("--apply", action="store_true", help="move (default: only print)")
    parser.add_argument(
        "--tiers",
        default=",".join(data["tiers"]),
        help="groups to act on (default %(default)s; near-duplicate only when named)",
    )
    parser.add_argument("--restore", action="store_true", help="move quarantined files back")
    parser.add_argument(
        "--include-edits",
        action="store_true",
        help="also move edits (cropped, recoloured... versions; default: only copies move)",
    )
    parser.add_argument(
        "--include-pairs",
        action="store_true",
        help="also move halves of RAW+JPEG pairs (default: a pair is one shot, left alone)",
    )
    args = parser.parse_args(argv)
    args.tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = [t for t in args.tiers if t not in ORDER]
    if unknown:
        parser.error("unknown tier(s): %s" % printable(", ".join(unknown)))
    args.dest = os.path.abspath(os.fsencode(args.dest) if args.dest else data["dest"])
    return args


def check(member, g, data, dst, kept_ok):
    """Why `member` must not move now (None: it may)."""
    src = member[0]
    if src in data["protected"]:
        return "skip (protected folder):", src
    if src in data["pairs"]:
        return "skip (half of a RAW+JPEG pair; --include-pairs moves it):", src
    if not unchanged(*member):
        return "skip (missing or changed since the report):", src
    if g["id"] not in kept_ok:
        kept = next(m for m in g["members"] if m[0] == g["keep"])
        kept_ok[g["id"]] = unchanged(*kept)
    if not kept_ok[g["id"]]:
        return "skip (kept copy missing or changed: %s):" % show(g["keep"]), src
    if os.path.lexists(dst):
        return "skip (already in quarantine; not overwritten):", dst
    return None


def inside_roots(dest, roots):
    """The indexed folder that holds `dest` (a quarantine there would be indexed again)."""
    for root in roots:
        for a, b in ((dest, root), (os.path.realpath(dest), os.path.realpath(root))):
            if a == b or a.startswith(b.rstrip(b"/") + b"/"):
                return root
    return None


def main(argv):
    data = load_plan()
    args = parse(argv, data)
    if args.include_pairs:
        data["pairs"] = set()
    inside = None if args.restore else inside_roots(args.dest, data["roots"])
    if inside is not None:
        print(
            "refused: %s is inside the indexed folder %s; choose a folder outside it"
            % (show(args.dest), show(inside)),
            file=sys.stderr,
        )
        return 2
    verb = "move" if args.apply else "would move"
    done = skipped = failed = 0
    kept_ok = {}
    kinds = (*MOVED_RELATIONS, "edits") if args.include_edits else MOVED_RELATIONS
    for member, g in movable(data["groups"], args.tiers, kinds):
        src = member[0]
        dst = os.path.join(args.dest, os.path.relpath(src, data["root"]))
        if args.restore:
            src, dst = dst, src
            if not os.path.isfile(src):
                continue
            back = os.path.lexists(dst)
            why = ("skip (a file is back at the original path):", dst) if back else None
        else:
            why = check(member, g, data, dst, kept_ok)
        if why:
            print(why[0], show(why[1]))
            skipped += 1
            continue
        print(
            "%s [%s] %s -> %s  (keeping %s)"
            % (verb, g["tier"], show(src), show(dst), show(g["keep"]))
        )
        if args.apply:
            try:
                move(src, dst)
            except OSError as exc:
                print("failed:", show(src), printable(exc.strerror or exc), file=sys.stderr)
                failed += 1
                continue
        done += 1
    hint = "" if args.apply else " (dry run: add --apply to move)"
    print(
        "%s %d files; %d skipped; %d failed%s"
        % ("moved" if args.apply else "would move", done, skipped, failed, hint)
    )
    return 1 if failed else 0'''
