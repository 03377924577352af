"""`bench/dedup.py --copies`: labelled copies and edits of the real corpus photos, deduplicated.

Every distinct picture of tests/fixtures/photos/flat is an original; each gets the copies people
make (byte copy, JPEG re-saves, resizes, format changes, a 1-px resize, a sideways camera JPEG's
upright export) and the edits they make (brightness, contrast, B&W, crops, a retouched corner).
Every file has the same modification time (as after a copy or a download) and no name marks a
copy: the worst case for the keep rule. The index is built with the tiny test weights: the exact
and pHash tiers do not depend on them, and only those tiers are counted. The quarantine
script's dry run says what the default moves, so the same figures come from any version of the
library (run it with PYTHONPATH pointing at another checkout to compare).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
FLAT = ROOT / "tests" / "fixtures" / "photos" / "flat"
WEIGHTS = ROOT / "tests" / "fixtures" / "clip-vit-tiny" / "tiny_birder.pt"
T = 1_700_000_000 * 10**9
Op = Callable[[Image.Image, Path, Path], None]  # (picture, original file, destination)


def _jpeg(q: int, scale: float = 1.0) -> Op:
    def save(img: Image.Image, _: Path, dest: Path) -> None:
        if scale != 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        img.save(dest.with_suffix(".jpg"), quality=q)

    return save


def _fmt(suffix: str, **kw: int) -> Op:
    return lambda img, _, dest: img.save(dest.with_suffix(suffix), **kw)


def _upright(img: Image.Image, _: Path, dest: Path) -> None:
    """A camera JPEG stored sideways (EXIF orientation 6) — this one is the copy's source —
    and, as the copy, its upright export without EXIF."""
    exif = Image.Exif()
    exif[0x0112] = 6
    img.transpose(Image.Transpose.ROTATE_90).save(dest.with_suffix(".side.jpg"), exif=exif)
    ImageOps.exif_transpose(Image.open(dest.with_suffix(".side.jpg"))).save(
        dest.with_suffix(".png")
    )
    dest.with_suffix(".side.jpg").unlink()


def _edit(change: Callable[[Image.Image], Image.Image], q: int = 95) -> Op:
    return lambda img, _, dest: change(img).save(dest.with_suffix(".jpg"), quality=q)


def _crop(share: float) -> Callable[[Image.Image], Image.Image]:
    def crop(img: Image.Image) -> Image.Image:
        dx, dy = round(img.width * share / 2), round(img.height * share / 2)
        return img.crop((dx, dy, img.width - dx, img.height - dy))

    return crop


def _corner(img: Image.Image) -> Image.Image:
    img = img.copy()
    w, h = img.size
    ImageDraw.Draw(img).rectangle((w * 0.7, h * 0.8, w * 0.95, h * 0.95), fill="white")
    return img


COPIES: dict[str, Op] = {
    "byte copy": lambda _, src, dest: shutil.copy(src, dest.with_suffix(src.suffix)),
    "jpeg q95": _jpeg(95),
    "jpeg q85": _jpeg(85),
    "jpeg q70": _jpeg(70),
    "half size q85": _jpeg(85, 0.5),
    "60 % q75 (messenger)": _jpeg(75, 0.6),
    "quarter size q70": _jpeg(70, 0.25),
    "png": _fmt(".png"),
    "webp q80": _fmt(".webp", quality=80),
    "1 px wider": lambda img, _, d: img.resize((img.width + 1, img.height)).save(
        d.with_suffix(".jpg"), quality=92),
    "upright export of a sideways JPEG": _upright,
}  # fmt: skip
EDITS: dict[str, Op] = {
    "brightness +10 %": _edit(lambda i: ImageEnhance.Brightness(i).enhance(1.1)),
    "brightness -10 %": _edit(lambda i: ImageEnhance.Brightness(i).enhance(0.9)),
    "contrast +15 %": _edit(lambda i: ImageEnhance.Contrast(i).enhance(1.15)),
    "black and white": _edit(lambda i: i.convert("L")),
    "saturation +30 %": _edit(lambda i: ImageEnhance.Color(i).enhance(1.3)),
    "crop 3 %": _edit(_crop(0.03)),
    "crop 6 %": _edit(_crop(0.06)),
    "retouched corner": _edit(_corner),
}


def originals() -> list[Path]:
    """The distinct pictures of the flat corpus folder (one per content; not the animation)."""
    seen, out = set(), []
    for path in sorted(FLAT.iterdir()):
        try:
            with Image.open(path) as img:
                frames = getattr(img, "n_frames", 1)
                key = (img.size, img.convert("L").resize((16, 16)).tobytes())
        except OSError:
            continue
        if key not in seen and frames == 1:
            seen.add(key)
            out.append(path)
    return out


def make_library(lib: Path) -> dict[str, tuple[str, str, str]]:
    """The library; returns derived path → (original path, "copy" | "edit", operation)."""
    truth: dict[str, tuple[str, str, str]] = {}
    for n, src in enumerate(originals()):
        folder = lib / "originals"
        folder.mkdir(parents=True, exist_ok=True)
        original = folder / f"{n:02d}{src.suffix.lower()}"
        shutil.copy(src, original)
        img = Image.open(src).convert("RGB")
        for kind, ops in (("copy", COPIES), ("edit", EDITS)):
            for i, (name, op) in enumerate(ops.items()):
                dest = lib / f"{kind[0]}{i:02d}" / f"{n:02d}"  # no copy word in the names
                dest.parent.mkdir(parents=True, exist_ok=True)
                op(img, original, dest)
                (made,) = dest.parent.glob(f"{n:02d}.*")
                truth[str(made)] = (str(original), kind, name)
    for path in lib.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(T, T))
    return truth


def measure(work: Path) -> dict[str, str]:
    """Build, dedup, dry-run the quarantine: the figures of one library version."""
    from indexer.build import build
    from indexer.dedup import DedupOptions, dedup
    from indexer.settings import Settings

    truth = make_library(work / "lib")
    settings = Settings.from_env(env={}, index=work / "index", weights=str(WEIGHTS), workers=1)
    build([work / "lib"], settings)
    started = time.perf_counter()
    report = dedup(work / "index", DedupOptions(device="cpu"))
    seconds = time.perf_counter() - started
    script = work / "q.py"
    script.write_text(report.quarantine_script("q.py"))
    dry = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    moved = {
        line.split("] ", 1)[1].split(" -> ")[0]
        for line in dry.stdout.splitlines()
        if line.startswith("would move [")
    }
    strong = [g for g in report.as_dict()["groups"] if g["tier"] in ("exact", "near-identical")]
    together = {(a["path"], b["path"]) for g in strong for a in g["members"] for b in g["members"]}
    return figures(truth, together, moved, strong, seconds)


def figures(truth: dict, together: set, moved: set, strong: list, seconds: float) -> dict:
    """Recall of copies and edits, what the default quarantine moves, whom the groups keep.

    An original and its byte copy are one picture (no rule can tell them apart): it is kept
    when either path is, and the byte copy counts as moved when one of the two moved."""
    twin = {o: p for p, (o, _, n) in truth.items() if n == "byte copy"}
    alias = {**twin, **{p: o for o, p in twin.items()}}

    def gone(p: str) -> bool:
        return p in moved or (p in alias and truth.get(p, ("", "", ""))[2] == "byte copy"
                              and alias[p] in moved)  # fmt: skip

    rows: dict[str, str] = {}
    for kind in ("copy", "edit"):
        items = [(p, o) for p, (o, k, _) in truth.items() if k == kind]
        found = sum((p, o) in together for p, o in items)
        rows[f"{kind} grouped with its original (exact or near-identical)"] = (
            f"{found} / {len(items)}"
        )
        rows[f"{kind} moved by the default quarantine"] = (
            f"{sum(gone(p) for p, _ in items)} / {len(items)}"
        )
    originals = {o for o, _, _ in truth.values()}
    lost = sum(o in moved and alias.get(o) in moved for o in originals)
    rows["originals lost (both bytes-identical paths moved)"] = f"{lost} / {len(originals)}"
    holding = [g for g in strong if originals & {m["path"] for m in g["members"]}]
    kept = sum(g["keep"] in originals or alias.get(g["keep"]) in originals for g in holding)
    rows["groups holding an original that keep it (or its byte copy)"] = f"{kept} / {len(holding)}"

    def which(kind: str, wrong: Callable[[str, str], bool]) -> str:
        hits = [f"{n} ({Path(o).name})" for p, (o, k, n) in sorted(truth.items())
                if k == kind and wrong(p, o)]  # fmt: skip
        return ", ".join(hits) or "none"

    rows["copies not grouped"] = which("copy", lambda p, o: (p, o) not in together)
    rows["copies not moved"] = which("copy", lambda p, o: not gone(p))
    rows["edits moved"] = which("edit", lambda p, o: p in moved)
    rows["groups not keeping the original"] = ", ".join(
        f"{g['tier']} {g['relation'] if 'relation' in g else ''}: {Path(g['keep']).parent.name}/"
        f"{Path(g['keep']).name}" for g in holding
        if g["keep"] not in originals and alias.get(g["keep"]) not in originals
    ) or "none"  # fmt: skip
    rows["dedup seconds (reads the grouped files)"] = f"{seconds:.1f}"
    return rows


def bench_copies(rows: dict) -> None:
    """Fill `rows` with the figures of the library on PYTHONPATH (a temporary folder)."""
    import indexer

    rows["library"] = str(Path(indexer.__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory(prefix="dedup-copies-") as tmp:
        rows.update(measure(Path(tmp)))
