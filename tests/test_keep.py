"""Which copy `index dedup` keeps: the original, not an export, an edit or a backup copy.

A library of real corpus photos and the derived copies people make (an EXIF-less PNG export of a
camera JPEG, a noisy PNG, a brightened PNG, a backup copy, a half-size copy, a 1-px larger
re-save, an upright export of a sideways (EXIF-rotated) camera JPEG, two indistinguishable
copies) is built with the tiny weights, then deduplicated.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import index_cli
from PIL import Image, ImageEnhance, ImageOps

from indexer.build import build
from indexer.dedup import DedupOptions, dedup
from indexer.dedup.keep import decide_keep
from indexer.settings import Settings

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos" / "flat"
WEIGHTS = Path(__file__).resolve().parent / "fixtures" / "clip-vit-tiny" / "tiny_birder.pt"
T = 1_700_000_000  # the library's file time, in seconds
DAY = 86_400


def camera_exif(make: str, model: str, taken: str) -> Image.Exif:
    """EXIF as a camera writes it: Make, Model and DateTimeOriginal (in the Exif IFD)."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    exif.get_ifd(0x8769)[0x9003] = taken
    return exif


def salt_and_pepper(img: Image.Image, share: float = 0.05) -> Image.Image:
    noisy, rnd = img.convert("RGB"), random.Random(14)
    px = noisy.load()
    for _ in range(int(noisy.width * noisy.height * share)):
        xy = (rnd.randrange(noisy.width), rnd.randrange(noisy.height))
        px[xy] = rnd.choice([(0, 0, 0), (255, 255, 255)])
    return noisy


def make_library(lib: Path) -> dict[str, int]:
    """The originals and their derived copies; returns file times (s) that differ from T."""
    for folder in ("png", "backup", "bright", "web", "a", "b", "2019", "trip", "upright"):
        (lib / folder).mkdir(parents=True)
    cat = Image.open(PHOTOS / "cat.jpg")
    exif = camera_exif("Canon", "Canon PowerShot S80", "2006:01:31 10:00:00")
    cat.save(lib / "IMG_0001.jpg", quality=95, exif=exif)
    Image.open(lib / "IMG_0001.jpg").save(lib / "png" / "IMG_0001.png")  # drops the EXIF
    cake = Image.open(PHOTOS / "cake.jpg").convert("RGB")
    cake.save(lib / "Lenna.png")
    salt_and_pepper(cake).save(lib / "LennaSaltAndPepper.png")
    shutil.copy(PHOTOS / "books.jpg", lib / "books.jpg")
    bright = ImageEnhance.Brightness(Image.open(PHOTOS / "books.jpg")).enhance(1.15)
    bright.save(lib / "bright" / "highQualityBright.png")
    shutil.copy(PHOTOS / "bee.jpg", lib / "bee.jpg")
    shutil.copy(PHOTOS / "bee.jpg", lib / "backup" / "copy of bee.jpg")
    lens = Image.open(PHOTOS / "camera lens.jpg")
    lens.save(lib / "lens.jpg", quality=95)
    lens.resize((lens.width // 2, lens.height // 2)).save(lib / "web" / "lens.jpg", quality=95)
    kitty = Image.open(PHOTOS / "black kitty.jpeg")
    kitty.save(lib / "a" / "kitty.jpg", quality=95)
    kitty.resize((kitty.width + 1, kitty.height)).save(lib / "b" / "kitty.jpg", quality=95)
    # a camera JPEG stored sideways with EXIF orientation 6, and its upright EXIF-less export
    tree = Image.open(PHOTOS / "tree.webp").convert("RGB").transpose(Image.Transpose.ROTATE_90)
    sideways = camera_exif("NIKON CORPORATION", "NIKON D70", "2004:06:01 09:30:00")
    sideways[0x0112] = 6
    tree.save(lib / "DSC_0042.jpg", quality=95, exif=sideways)
    ImageOps.exif_transpose(Image.open(lib / "DSC_0042.jpg")).save(lib / "upright" / "tree.png")
    shutil.copy(PHOTOS / "black cat at night.jpg", lib / "2019" / "night.jpg")
    shutil.copy(PHOTOS / "black cat at night.jpg", lib / "trip" / "night.jpg")
    times = {
        "png/IMG_0001.png": T - DAY,  # the export is older and larger: camera metadata wins
        "upright/tree.png": T - DAY,  # so is the upright export of a sideways camera JPEG
        "web/lens.jpg": T - DAY,  # the half-size copy is older: more pixels win
        "b/kitty.jpg": T + DAY,  # 1 px wider, but a day younger: the file time decides
    }
    for path in lib.rglob("*"):
        if path.is_file():
            seconds = times.get(path.relative_to(lib).as_posix(), T)
            os.utime(path, ns=(seconds * 10**9, seconds * 10**9))
    return times


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_encoder) -> tuple[Path, Path]:
    """(library, index): the library built once with the tiny weights."""
    root = tmp_path_factory.mktemp("keep")
    lib, index = root / "library", root / "index"
    make_library(lib)
    settings = Settings.from_env(env={}, index=index, weights=str(WEIGHTS), workers=1)
    build([lib], settings, encoder=tiny_encoder)
    return lib, index


def group_of(groups: list[dict], path: Path) -> dict:
    """The exact or near-identical group holding `path`."""
    strong = (g for g in groups if g["tier"] in ("exact", "near-identical"))
    return next(g for g in strong if str(path) in {m["path"] for m in g["members"]})


def run_cli(index: Path, *args: str) -> dict:
    run = index_cli("dedup", "--index", index, "--json", "--device", "cpu", *args, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


CASES = [
    # (a member, the kept file, reason, signal)
    (
        "png/IMG_0001.png",
        "IMG_0001.jpg",
        "camera original (Canon PowerShot S80, 2006-01-31)",
        "camera",
    ),
    (
        "upright/tree.png",
        "DSC_0042.jpg",
        "camera original (NIKON D70, 2004-06-01)",
        "camera",
    ),
    (
        "LennaSaltAndPepper.png",
        "Lenna.png",
        "fewer pixels clipped to black or white (0.1 % vs 5.0 %; edits clip)",
        "unedited",
    ),
    (
        "bright/highQualityBright.png",
        "books.jpg",
        'JPEG original ("bright/highQualityBright.png" carries JPEG\'s 8×8 block grid: decoded '
        "from a JPEG)",
        "encoding",
    ),
    (
        "backup/copy of bee.jpg",
        "bee.jpg",
        'the others look like copies ("backup/copy of bee.jpg")',
        "copy-names",
    ),
    ("web/lens.jpg", "lens.jpg", "more pixels (384×256 vs 192×128)", "pixels"),
    (
        "b/kitty.jpg",
        "a/kitty.jpg",
        "modified earlier (file time {a} vs {b})",
        "file-time",
    ),
    (
        "trip/night.jpg",
        "2019/night.jpg",
        "no signal tells them apart (same pixels and metadata); kept the first path",
        "path",
    ),
]


def file_time(seconds: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")


@pytest.mark.parametrize(("member", "kept", "reason", "signal"), CASES)
def test_default_keeps_the_original(library, member, kept, reason, signal):
    lib, index = library
    groups = dedup(index, DedupOptions(device="cpu")).as_dict()["groups"]
    group = group_of(groups, lib / member)
    assert group["keep"] == str(lib / kept)
    assert group["reason"] == reason.format(a=file_time(T), b=file_time(T + DAY))
    assert group["keep_signal"] == signal


def test_cli_default_user_rules_and_preferred_folders(library):
    lib, index = library
    default = run_cli(index)["groups"]
    for member, kept, _, signal in CASES:
        group = group_of(default, lib / member)
        assert (group["keep"], group["keep_signal"]) == (str(lib / kept), signal)
    # a user who wants the largest file still gets it
    by_size = run_cli(index, "--keep", "size")["groups"]
    noisy = group_of(by_size, lib / "LennaSaltAndPepper.png")
    assert noisy["keep"] == str(lib / "LennaSaltAndPepper.png")
    assert noisy["reason"].startswith("largest file (") and noisy["keep_signal"] == "size"
    assert group_of(by_size, lib / "books.jpg")["keep"] == str(lib / "bright/highQualityBright.png")
    # --prefer still wins first, over camera metadata
    preferred = run_cli(index, "--prefer", str(lib / "png"))["groups"]
    export = group_of(preferred, lib / "IMG_0001.jpg")
    assert export["keep"] == str(lib / "png" / "IMG_0001.png")
    assert export["reason"] == f"in preferred folder {lib / 'png'}"
    assert export["keep_signal"] == "preferred-folder"
    bee = group_of(preferred, lib / "bee.jpg")  # the rest of the rule still applies
    assert bee["keep"] == str(lib / "bee.jpg") and bee["keep_signal"] == "copy-names"


def test_text_summary_names_the_signal(library):
    _, index = library
    command = [sys.executable, "-m", "indexer.cli", "dedup", "--index", str(index)]
    run = subprocess.run([*command, "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "[camera original (Canon PowerShot S80, 2006-01-31)]" in run.stdout
    assert "[no signal tells them apart (same pixels and metadata); kept the first path]" in (
        run.stdout
    )


def member(path: str, **fields) -> dict:
    base = {"width": 400, "height": 300, "format": "JPEG", "size": 100, "mtime_ns": T * 10**9}
    return {"path": path, **base, **fields}


@pytest.mark.parametrize(
    ("original", "copy"),
    [
        ("/p/IMG_0042.jpg", "/p/IMG_0042 (1).jpg"),
        ("/p/IMG_0042.jpg", "/p/IMG_0042 2.jpg"),
        ("/p/IMG_0042.jpg", "/p/IMG_0042 - Copy.jpg"),
        ("/p/IMG_0042.jpg", "/p/Copy of IMG_0042.jpg"),
        ("/p/IMG_0042.jpg", "/p/IMG_0042-edit.jpg"),
        ("/p/IMG_0042.jpg", "/p/IMG_0042_small.jpg"),
        ("/p/trip/IMG_0042.jpg", "/p/trip/export/IMG_0042.jpg"),
        ("/p/trip/IMG_0042.jpg", "/p/trip/resized/IMG_0042.jpg"),
        ("/p/trip/IMG_0042.jpg", "/p/trip/thumbs/IMG_0042.jpg"),
        ("/p/zebra.jpg", "/p/edited/aardvark.jpg"),
    ],
)
def test_copy_like_names_lose_ties(original, copy):
    choice = decide_keep([member(copy), member(original)])
    assert (choice.member["path"], choice.signal) == (original, "copy-names")


def test_names_that_only_look_related_are_not_copies():
    # a longer number or word is another picture, not a copy; a common folder marks nobody
    for a, b in (
        ("/p/IMG_1.jpg", "/p/IMG_10.jpg"),
        ("/p/cat.jpg", "/p/cats.jpg"),
        ("/backup/x/a.jpg", "/backup/x/b.jpg"),
        ("/p/Holiday (2019).jpg", "/p/Tour 2019.jpg"),
    ):
        choice = decide_keep([member(b), member(a)])
        assert choice.signal == "path" and choice.member["path"] == a
        assert choice.reason.startswith("no signal tells them apart (same resolution")


def test_measured_signals_have_margins():
    big = member("/p/b.jpg", width=4032, height=3024, mtime_ns=(T + DAY) * 10**9)
    crop = member("/p/a.jpg", width=4031, height=3024)  # 1 px less: not materially fewer
    assert decide_keep([big, crop]).signal == "file-time"
    half = member("/p/a.jpg", width=2016, height=1512)
    choice = decide_keep([big, half])
    assert choice.member is big and choice.reason == "more pixels (4032×3024 vs 2016×1512)"
    soon = member("/p/a.jpg", mtime_ns=(T + 30) * 10**9)  # 30 s apart: one copy operation
    assert decide_keep([member("/p/b.jpg"), soon]).signal == "path"
    taken = [
        member("/p/a.jpg", taken_at="2021-03-01T09:00:00", camera="Apple iPhone 12"),
        member("/p/b.jpg", taken_at="2019-05-02T10:00:00", camera="Apple iPhone 12"),
    ]
    choice = decide_keep(taken)
    assert choice.member is taken[1] and choice.reason == "taken earlier (2019-05-02 vs 2021-03-01)"
