"""Copies or edits, and which file is the original, read from the files themselves.

A library made from the real corpus photos the way people make one: a lossless original and
its JPEG re-save, a TIFF decoded from a JPEG long gone and its re-save, a PNG export of a JPEG,
a q95 JPEG and its q70 copy, brightened, cropped and B&W versions saved at a higher quality
than their source, two different text screenshots and a JPEG copy of one. Every file has the
same modification time, as after a copy or a download.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import PHOTOS, TINY_BIRDER, run_script
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from indexer import imaging
from indexer.build import build
from indexer.dedup import DedupOptions, dedup
from indexer.dedup.confirm import COPY, DISTINCT, EDIT, compare
from indexer.dedup.evidence import GRID_RATIO, jpeg_quality, read_look
from indexer.dedup.review import summarize
from indexer.settings import Settings

FLAT = PHOTOS / "flat"
T = 1_700_000_000 * 10**9
WORDS = [
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "Pack my box with five dozen liquor jugs before the morning train leaves.",
    "Sphinx of black quartz, judge my vow; the jay, pig, fox, zebra and my wolves quack!",
    "How vexingly quick daft zebras jump when the wizard quickly jinxes the gnomes.",
]


def screenshot(seed: int) -> Image.Image:
    """A text editor window: a title bar and 14 lines of text on white."""
    img = Image.new("RGB", (800, 500), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 800, 28), fill=(230, 230, 230))
    font, rnd = ImageFont.load_default(size=15), random.Random(seed)
    for line in range(14):
        text = " ".join(rnd.choice(WORDS) for _ in range(2))[:95]
        draw.text((20, 45 + 30 * line), text, fill=(20, 20, 20), font=font)
    return img


def make_library(lib: Path) -> None:
    for folder in ("Scans", "Shared", "exports", "bright10", "edits", "a", "b", "shots"):
        (lib / folder).mkdir(parents=True)
    # a lossless original (never a JPEG at this size), its q85 re-save and a brightened edit
    moon = Image.open(FLAT / "boats on a lake.png").convert("RGB").resize((288, 192), Image.LANCZOS)
    moon.save(lib / "Scans" / "moon.png")
    moon.save(lib / "Shared" / "moon.jpg", quality=85)
    ImageEnhance.Brightness(moon).enhance(1.1).save(lib / "bright10" / "moon.jpg", quality=95)
    # a TIFF decoded from a JPEG that is not here (the corpus's own), and its q85 re-save
    shutil.copy(FLAT / "chess-knight.tiff", lib / "Scans" / "knight.tiff")
    Image.open(FLAT / "chess-knight.tiff").save(lib / "Shared" / "knight.jpg", quality=85)
    # a camera JPEG (no EXIF) and its PNG export
    shutil.copy(FLAT / "cake.jpg", lib / "cake.jpg")
    Image.open(FLAT / "cake.jpg").save(lib / "exports" / "cake.png")
    # a JPEG and its edits, each saved at a higher quality than the source (q90)
    cat = Image.open(FLAT / "cat.jpg")
    shutil.copy(FLAT / "cat.jpg", lib / "cat.jpg")
    ImageEnhance.Brightness(cat).enhance(1.1).save(lib / "edits" / "cat bright.jpg", quality=98)
    cat.crop((6, 4, cat.width - 6, cat.height - 4)).save(lib / "edits" / "cat crop.jpg", quality=98)
    cat.convert("L").save(lib / "edits" / "cat bw.jpg", quality=98)
    # a q95 JPEG and its q70 copy
    Image.open(FLAT / "black kitty.jpeg").save(lib / "a" / "kitty.jpg", quality=95)
    Image.open(lib / "a" / "kitty.jpg").save(lib / "b" / "kitty.jpg", quality=70)
    # two different text screenshots (8 pHash bits apart) and a JPEG copy of one
    for name, seed in (("note0", 1), ("note1", 3)):
        screenshot(seed).save(lib / "shots" / f"{name}.png")
    Image.open(lib / "shots" / "note0.png").save(lib / "shots" / "note0 copy.jpg", quality=90)
    for path in lib.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(T, T))


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_encoder) -> tuple[Path, Path, dict]:
    """(library, index, JSON report), built and deduplicated once."""
    root = tmp_path_factory.mktemp("copies")
    lib, index = root / "lib", root / "index"
    make_library(lib)
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build([lib], settings, encoder=tiny_encoder)
    report = dedup(index, DedupOptions(device="cpu"))
    (root / "q.py").write_text(report.quarantine_script("q.py"))
    return lib, index, report.as_dict()


def group_with(report: dict, path: Path, relation: str) -> dict:
    holding = (g for g in report["groups"] if str(path) in {m["path"] for m in g["members"]})
    return next(g for g in holding if g["relation"] == relation)


def test_the_lossless_original_is_kept_over_its_jpeg_resave(library):
    lib, _, report = library
    group = group_with(report, lib / "Shared" / "moon.jpg", "copies")
    assert group["keep"] == str(lib / "Scans" / "moon.png") and group["keep_signal"] == "encoding"
    assert group["reason"] == (
        "lossless original (PNG without a JPEG block grid: not decoded from a JPEG; "
        '"Shared/moon.jpg" is lossy)'
    )


def test_a_lossless_file_decoded_from_a_jpeg_not_here_beats_its_re_save(library):
    lib, _, report = library
    group = group_with(report, lib / "Shared" / "knight.jpg", "copies")
    assert (
        group["keep"] == str(lib / "Scans" / "knight.tiff") and group["keep_signal"] == "encoding"
    )
    assert group["reason"].startswith("lossless TIFF decoded from a quality ≈9")  # the JPEG's ≈94
    assert group["reason"].endswith(
        'JPEG that is not here; "Shared/knight.jpg" is another re-encode'
    )


def test_a_png_export_of_a_jpeg_loses_to_the_jpeg(library):
    lib, _, report = library
    group = group_with(report, lib / "exports" / "cake.png", "copies")
    assert group["keep"] == str(lib / "cake.jpg") and group["keep_signal"] == "encoding"
    assert group["reason"] == (
        'JPEG original ("exports/cake.png" is this JPEG decoded: same size, its 8×8 block grid at '
        "quality ≈90)"
    )


def test_a_q95_jpeg_beats_its_q70_copy(library):
    lib, _, report = library
    group = group_with(report, lib / "b" / "kitty.jpg", "copies")
    assert group["keep"] == str(lib / "a" / "kitty.jpg") and group["keep_signal"] == "quality"
    assert group["reason"] == "higher JPEG quality (≈95 vs ≈70, from the quantisation tables)"


def test_edits_never_outrank_their_source_and_are_their_own_relation(library):
    lib, _, report = library
    cat = group_with(report, lib / "edits" / "cat bright.jpg", "edits")
    names = {Path(m["path"]).name for m in cat["members"]}
    assert names == {"cat.jpg", "cat bright.jpg", "cat crop.jpg", "cat bw.jpg"}
    assert cat["keep"] == str(lib / "cat.jpg")  # not a q98 edit of it
    assert not any(
        g["relation"] == "copies" and str(lib / "cat.jpg") in {m["path"] for m in g["members"]}
        for g in report["groups"]
    )  # none of them is a copy of the cat
    moon = group_with(report, lib / "bright10" / "moon.jpg", "edits")
    assert moon["keep"] == str(lib / "Scans" / "moon.png")
    copies = group_with(report, lib / "Shared" / "moon.jpg", "copies")
    assert moon["contains"] == [copies["id"]]  # the edits group holds the copies' group


def test_different_text_screenshots_are_not_grouped(library):
    lib, index, report = library
    hashes = [imaging.perceptual_hash(Image.open(lib / "shots" / f"note{s}.png")) for s in (0, 1)]
    assert imaging.hamming(*hashes) <= DedupOptions().hamming  # the pHash alone would link them
    for g in report["groups"]:
        assert not {str(lib / "shots" / "note0.png"), str(lib / "shots" / "note1.png")} <= {
            m["path"] for m in g["members"]
        }
    copy = group_with(report, lib / "shots" / "note0 copy.jpg", "copies")
    assert copy["keep"] == str(lib / "shots" / "note0.png")


def test_the_dry_run_lists_only_copies_and_the_report_counts_what_it_moves(library):
    lib, _, report = library
    script = lib.parent / "q.py"
    dry = run_script(script)
    assert dry.returncode == 0, dry.stderr
    moved = {line.split("] ", 1)[1].split(" -> ")[0] for line in dry.stdout.splitlines()
             if line.startswith("would move [")}  # fmt: skip
    copies = ("Shared/moon.jpg", "Shared/knight.jpg", "b/kitty.jpg", "exports/cake.png")
    copies = (*copies, "shots/note0 copy.jpg")
    assert moved == {str(lib / p) for p in copies}
    lines = summarize(report["groups"])
    assert sum(lines[t].duplicates for t in ("exact", "near-identical")) == len(moved)
    assert lines["near-identical"].edits == 4  # the bright moon; the cat's three edits
    edits = run_script(script, "--include-edits")
    assert f"would move {len(moved) + 4} files" in edits.stdout
    assert str(lib / "edits" / "cat bw.jpg") in edits.stdout


def test_the_cli_says_which_groups_are_edits(library):
    from conftest import index_cli

    _, index, _ = library
    done = index_cli("dedup", "--index", index, "--device", "cpu", timeout=120)
    assert done.returncode == 0, done.stderr
    assert ", edits of one picture (kept apart: not moved by default)" in done.stdout
    assert "  edit  " in done.stdout and "  copy  " in done.stdout
    as_json = index_cli("dedup", "--index", index, "--device", "cpu", "--json", timeout=120)
    assert {g["relation"] for g in json.loads(as_json.stdout)["groups"]} == {"copies", "edits"}


# --- the evidence and the tolerance, measured on the corpus photos ---------------------------
def test_jpeg_quality_is_read_from_the_quantisation_tables(tmp_path):
    for quality in (30, 50, 70, 85, 90, 95, 98):
        Image.open(FLAT / "cat.jpg").save(tmp_path / "q.jpg", quality=quality)
        with Image.open(tmp_path / "q.jpg") as img:
            assert abs(jpeg_quality(img.quantization) - quality) <= 1, quality


def test_the_block_grid_shows_which_lossless_files_were_decoded_from_a_jpeg(tmp_path):
    """The corpus's PNG, TIFF, BMP and PNM files were made from JPEGs (rclip's test photos):
    they carry the grid. Resized by 3/4 they become lossless pictures no JPEG made."""
    for name in ("boats on a lake.png", "chess-knight.tiff", "chess-pawns.bmp", "kookaburras.pnm"):
        decoded = read_look(str(FLAT / name), None, None, imaging.DecodeOptions())
        img = Image.open(FLAT / name).convert("RGB")
        img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.LANCZOS).save(
            tmp_path / "s.png"
        )
        source = read_look(str(tmp_path / "s.png"), None, None, imaging.DecodeOptions())
        assert decoded.lossless and decoded.grid >= GRID_RATIO, name
        assert source.lossless and source.grid < GRID_RATIO - 0.05, name
        img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.LANCZOS).save(
            tmp_path / "s.jpg", quality=98
        )
        Image.open(tmp_path / "s.jpg").save(tmp_path / "s98.png")  # even after quality 98
        assert read_look(str(tmp_path / "s98.png"), None, None, imaging.DecodeOptions()).grid >= (
            GRID_RATIO
        ), name


def _variants(img: Image.Image) -> dict[str, tuple[Image.Image, str, int]]:
    """(picture, format, quality) for each everyday copy and edit."""
    w, h = img.size
    half = img.resize((w // 2, h // 2), Image.LANCZOS)
    quarter = img.resize((w // 4, h // 4), Image.LANCZOS)
    corner = img.copy()
    ImageDraw.Draw(corner).rectangle((w * 0.7, h * 0.8, w * 0.95, h * 0.95), fill="white")
    dx, dy = round(w * 0.015), round(h * 0.015)
    return {
        "q95": (img, "JPEG", 95), "q30": (img, "JPEG", 30), "half q60": (half, "JPEG", 60),
        "quarter q70": (quarter, "JPEG", 70), "webp": (img, "WEBP", 80), "png": (img, "PNG", 0),
        "1px wider": (img.resize((w + 1, h)), "JPEG", 92),
        "bright 5%": (ImageEnhance.Brightness(img).enhance(1.05), "JPEG", 95),
        "dark 10%": (ImageEnhance.Brightness(img).enhance(0.9), "JPEG", 95),
        "contrast": (ImageEnhance.Contrast(img).enhance(1.15), "JPEG", 95),
        "B&W": (img.convert("L").convert("RGB"), "JPEG", 95),
        "crop 3%": (img.crop((dx, dy, w - dx, h - dy)), "JPEG", 95),
        "retouched corner": (corner, "JPEG", 95),
    }  # fmt: skip


COPIES = {"q95", "q30", "half q60", "quarter q70", "webp", "png", "1px wider"}


@pytest.mark.parametrize("name", ["cake.jpg", "chessboard with rocks.JPG", "kookaburras.pnm"])
def test_copies_and_edits_of_real_photos(tmp_path, name):
    options = imaging.DecodeOptions()
    src = Image.open(FLAT / name).convert("RGB")
    base = read_look(str(FLAT / name), None, None, options)
    for label, (img, fmt, quality) in _variants(src).items():
        path = tmp_path / f"variant.{fmt.lower()}"
        img.save(path, fmt, **({"quality": quality} if quality else {}))
        look = read_look(str(path), None, None, options)
        found = compare(base.thumb, look.thumb, src.size, img.size, max(base.flat, look.flat))
        assert found.relation == (COPY if label in COPIES else EDIT), (label, found)


def test_text_screenshots_compare_by_their_text():
    a, b = np.asarray(screenshot(1)), np.asarray(screenshot(3))
    assert compare(a[::2, ::2], b[::2, ::2], (800, 500), (800, 500), 0.67).relation == DISTINCT
    same = compare(a[::2, ::2], a[::2, ::2], (800, 500), (800, 500), 0.67)
    assert same.relation == COPY and same.flat


def test_reports_and_the_page_show_edits_beside_their_original(library, monkeypatch):
    from conftest import APP, Gallery
    from streamlit.testing.v1 import AppTest

    lib, index, _ = library
    report = dedup(index, DedupOptions(device="cpu"))
    gallery = Gallery()
    gallery.feed(report.render("html"))
    fields = gallery.data["fields"]
    moon = next(g for g in gallery.data["groups"] if g[9] == "edits" and g[2].endswith("moon.png"))
    flags = {Path(m[0]).parent.name: m[fields.index("edit")] for m in moon[7]}
    assert flags == {"Scans": False, "Shared": False, "bright10": True}  # kept, its copy, an edit
    for name, value in (("INDEX", index), ("WEIGHTS", TINY_BIRDER), ("DEVICE", "cpu")):
        monkeypatch.setenv(f"PHOTO_INDEX_{name}", str(value))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/duplicates.py").run()
    texts = [m.value for m in at.markdown]
    assert ":orange-badge[edit] `cat bw.jpg`" in texts and ":gray-badge[copy] `moon.jpg`" in texts
    head = next(t for t in texts if "keep `cat.jpg`" in t)
    assert "edits: kept apart, not moved by default" in head
    table = next(t for t in texts if t.startswith("| tier |"))
    assert "| near-identical | pHash ≤ 10 bits apart (score ≥ 0.844) | 7 | 17 | 5 |" in table
    assert table.split("\n")[3].endswith("| 4 |")  # the bright moon and the cat's three edits
