"""RAW camera files: indexed through LibRaw (preview or half-size demosaic), upright, with the
sensor's size and the RAW's own date and camera; RAW+JPEG pairs are one shot in dedup."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import APP, FIXTURE_DIR, PHOTOS, TINY_BIRDER
from PIL import Image
from streamlit.testing.v1 import AppTest

from indexer import imaging, raw
from indexer.dedup import DedupOptions, dedup
from indexer.dedup.review import summarize
from indexer.store.catalog import Catalog
from indexer.thumbs import thumbnail_bytes

pytest.importorskip("rawpy")

RAW_DIR = FIXTURE_DIR / "raw"
BIRD = RAW_DIR / "bird-preview-rot6.dng"  # 640x576 sensor, 512x461 preview, orientation 6
CAT = RAW_DIR / "cat-small-preview-rot8.dng"  # 384x256 sensor, 192x128 preview, orientation 8
PATTERN = RAW_DIR / "pattern-no-preview.dng"  # 320x240 sensor, no preview, no metadata


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )


def _build(folder: Path, index: Path, env: dict | None = None) -> tuple[int, dict]:
    done = _cli(
        "build", str(folder), "--index", str(index), "--weights", str(TINY_BIRDER),
        "--workers", "1", "--json", env=env,
    )  # fmt: skip
    assert done.returncode in (0, 3), done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def _save_twin(raw_path: Path, twin: Path) -> Image.Image:
    """The JPEG a camera writes beside its RAW: here, the RAW's own upright picture."""
    img, _ = imaging.open_image(raw_path)
    img.save(twin, quality=90)
    return img


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A photographer's folder indexed once: RAW under several suffixes, RAW+JPEG pairs (one
    with an edit of its JPEG elsewhere), DNGs with and without previews, broken RAWs."""
    lib = tmp_path_factory.mktemp("raw") / "photos"
    (lib / "edits").mkdir(parents=True)
    shutil.copy(PATTERN, lib / PATTERN.name)  # a DNG without preview
    # LibRaw reads by content, not by name: DNGs under other RAW suffixes
    shutil.copy(BIRD, lib / "IMG_0412.CR2")  # with a big preview
    img = _save_twin(lib / "IMG_0412.CR2", lib / "IMG_0412.JPG")
    w, h = img.size  # an edit elsewhere: cropped a little and upscaled (4 pHash bits apart)
    img.crop((4, 4, w - 4, h - 4)).resize((2 * w, 2 * h)).save(lib / "edits" / "IMG_0412-edit.jpg")
    shutil.copy(CAT, lib / "DSC_0001.NEF")  # with a small preview
    _save_twin(lib / "DSC_0001.NEF", lib / "dsc_0001.jpg")  # the stem matches case-insensitively
    shutil.copy(PHOTOS / "flat" / "books.jpg", lib / "books.jpg")
    (lib / "broken.ARW").write_bytes(os.urandom(4000))
    (lib / "truncated.DNG").write_bytes(PATTERN.read_bytes()[:50000])
    index = lib.parent / "index"
    code, summary = _build(lib, index)
    return {"lib": lib, "index": index, "code": code, "summary": summary}


def _records(index: Path) -> dict[str, dict]:
    cat = Catalog(index, readonly=True)
    try:
        return {Path(r["path"]).name: r for r in cat.records()}
    finally:
        cat.close()


def test_build_indexes_raw_pairs_and_dngs_with_and_without_previews(library):
    s = library["summary"]
    assert library["code"] == 3  # the two broken RAWs are this run's failures
    assert (s["new"], s["images"], s["failed"], s["skipped"]) == (7, 7, 2, 0)  # failed once
    recs = _records(library["index"])
    assert sorted(recs) == sorted(
        [PATTERN.name, "IMG_0412.CR2", "IMG_0412.JPG", "IMG_0412-edit.jpg", "DSC_0001.NEF"]
        + ["dsc_0001.jpg", "books.jpg"]
    )
    assert {n: recs[n]["pixels_from"] for n in ("IMG_0412.CR2", "DSC_0001.NEF", PATTERN.name)} == {
        "IMG_0412.CR2": raw.PREVIEW,  # 512x461 preview: >= 448 px on its shorter side
        "DSC_0001.NEF": raw.DEMOSAIC,  # 192x128 preview: too small, demosaiced at half size
        PATTERN.name: raw.DEMOSAIC,  # no preview
    }
    assert recs["books.jpg"]["pixels_from"] is None
    assert [recs[n]["format"] for n in ("IMG_0412.CR2", "DSC_0001.NEF", PATTERN.name)] == [
        "CR2",
        "NEF",
        "DNG",
    ]


def test_sizes_are_the_sensor_image_upright_and_metadata_is_the_raw_s(library):
    recs = _records(library["index"])
    # orientation 6 and 8 turn the sensor's 640x576 and 384x256 to portrait; no preview size
    assert (recs["IMG_0412.CR2"]["width"], recs["IMG_0412.CR2"]["height"]) == (576, 640)
    assert (recs["DSC_0001.NEF"]["width"], recs["DSC_0001.NEF"]["height"]) == (256, 384)
    assert (recs[PATTERN.name]["width"], recs[PATTERN.name]["height"]) == (320, 240)
    assert (recs["IMG_0412.CR2"]["camera"], recs["IMG_0412.CR2"]["taken_at"]) == (
        "Acme RAW-1",
        "2021-06-05T14:03:01",
    )
    assert (recs["DSC_0001.NEF"]["camera"], recs["DSC_0001.NEF"]["taken_at"]) == (
        "NIKON D90",
        "2019-03-04T10:11:12",
    )
    assert (recs[PATTERN.name]["camera"], recs[PATTERN.name]["taken_at"]) == (None, None)


def test_broken_raws_are_ledgered_with_libraw_s_reason(library):
    cat = Catalog(library["index"], readonly=True)
    try:
        failures = {Path(f["path"]).name: f for f in cat.failures()}
    finally:
        cat.close()
    assert sorted(failures) == ["broken.ARW", "truncated.DNG"]
    assert failures["broken.ARW"]["reason"] == (
        "LibRaw cannot read this RAW file: Unsupported file format or not RAW file"
    )
    assert failures["truncated.DNG"]["reason"].startswith("LibRaw cannot read this RAW file: ")


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L").resize((24, 24), Image.BILINEAR), np.float64)


@pytest.mark.parametrize(
    ("dng", "turn", "pixels_from"),
    [(BIRD, Image.Transpose.ROTATE_270, raw.PREVIEW), (CAT, Image.Transpose.ROTATE_90, None)],
)
def test_both_decode_paths_turn_the_picture_upright(dng, turn, pixels_from):
    """The DNGs store their source picture as is, tagged 6 (turn clockwise) or 8: shown, each
    must be the source turned that way, closer to it than any other turn."""
    sources = {BIRD: PHOTOS / "unicode" / "鳥鳥.png", CAT: PHOTOS / "flat" / "cat.jpg"}
    source = Image.open(sources[dng]).convert("RGB")
    img, meta = imaging.open_image(dng)
    assert meta.pixels_from == (pixels_from or raw.DEMOSAIC)
    # the same file through the other path (a preview never used: min_preview out of reach)
    data = dng.read_bytes()
    forced = raw.decode(data, raw.Limits(10**6, 150.0, 768.0)).image
    for shown in (img, forced):
        errors = {t: np.abs(_grey(shown) - _grey(source.transpose(t))).mean() for t in _TURNS}
        assert min(errors, key=errors.get) == turn, errors


_TURNS = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT,
)


def test_raw_pairs_are_one_shot_in_dedup_and_the_raw_is_kept(library):
    report = dedup(library["index"], DedupOptions(near_duplicate=0.9))
    groups = [g.as_dict() for g in report.groups]
    by_keep = {Path(g["keep"]).name: g for g in groups}
    nef = by_keep["DSC_0001.NEF"]  # the RAW and its camera JPEG only: a pair, nothing to clean
    assert nef["relation"] == "pair"
    assert {Path(m["path"]).name: Path(m["pair"]).name for m in nef["members"]} == {
        "DSC_0001.NEF": "dsc_0001.jpg",
        "dsc_0001.jpg": "DSC_0001.NEF",
    }
    cr2 = by_keep["IMG_0412.CR2"]  # the pair plus an edit of its JPEG elsewhere: the RAW kept
    assert cr2["relation"] == "copies" and cr2["keep_signal"] == "raw"
    names = {Path(m["path"]).name for m in cr2["members"]}
    assert {"IMG_0412.JPG", "IMG_0412-edit.jpg"} <= names
    assert all(raw.is_raw(g["keep"]) for g in groups if g["relation"] == "pair")
    # a pair's JPEG half is not counted as space to reclaim (each other copy once)
    duplicates = sum(t.duplicates for t in summarize(report.groups).values())
    assert duplicates == len(
        {
            m["path"]
            for g in groups
            for m in g["members"]
            if m["path"] != g["keep"] and not m["pair"]
        }
    )


def test_the_raw_is_kept_whatever_the_rule_and_edits_group_with_it_by_clip(library):
    """An upscaled edit has more pixels than the RAW: a pixels-first rule would keep it, but a
    RAW is never proposed for moving. With pHash links off (hamming 0) CLIP still groups it."""
    options = DedupOptions(hamming=0, near_duplicate=0.9, keep="pixels,size")
    groups = [g.as_dict() for g in dedup(library["index"], options).groups]
    with_edit = [g for g in groups if any("edit" in m["path"] for m in g["members"])]
    assert with_edit and all(Path(g["keep"]).name == "IMG_0412.CR2" for g in with_edit)
    assert {g["tier"] for g in with_edit} <= {"near-duplicate"}
    for g in groups:
        raws = [m for m in g["members"] if raw.is_raw(m["path"])]
        assert not raws or g["keep"] in {m["path"] for m in raws}


def _quarantine(script: Path, dest: Path, *flags: str) -> tuple[str, set[str]]:
    """Run the quarantine script with --apply; its output and the names it moved."""
    done = subprocess.run(
        [sys.executable, str(script), "--apply", *flags, str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    moved = {p.name for p in dest.rglob("*") if p.is_file()} if dest.exists() else set()
    return done.stdout, moved


def test_quarantine_leaves_both_halves_of_a_pair_unless_asked(library, tmp_path):
    script = tmp_path / "quarantine.py"
    script.write_text(dedup(library["index"], DedupOptions(near_duplicate=0.9)).quarantine_script())
    before = sorted(p.relative_to(library["lib"]) for p in library["lib"].rglob("*"))
    out, moved = _quarantine(script, tmp_path / "q")
    try:
        assert "IMG_0412-edit.jpg" in moved  # the edit is a duplicate of the shot
        assert not moved & {"IMG_0412.JPG", "dsc_0001.jpg", "IMG_0412.CR2", "DSC_0001.NEF"}
        assert "skip (half of a RAW+JPEG pair; --include-pairs moves it):" in out
    finally:
        _quarantine(script, tmp_path / "q", "--restore")
    out, moved = _quarantine(script, tmp_path / "q2", "--include-pairs")
    try:
        assert {"IMG_0412.JPG", "dsc_0001.jpg"} <= moved  # asked for: the JPEG halves go
        assert not moved & {"IMG_0412.CR2", "DSC_0001.NEF"}  # the RAW is kept, never moved
    finally:
        _quarantine(script, tmp_path / "q2", "--restore")
    assert sorted(p.relative_to(library["lib"]) for p in library["lib"].rglob("*")) == before


def test_without_rawpy_raw_files_are_skipped_with_the_install_hint(tmp_path):
    """No [raw] extra: RAW files are counted as skipped, with the hint, and the run is clean."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "rawpy.py").write_text("raise ImportError('rawpy is not installed here')\n")
    lib = tmp_path / "photos"
    lib.mkdir()
    shutil.copy(BIRD, lib / "IMG_0001.CR2")
    shutil.copy(PATTERN, lib / "IMG_0002.DNG")
    shutil.copy(PHOTOS / "flat" / "books.jpg", lib / "books.jpg")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), root])}
    code, summary = _build(lib, tmp_path / "index", env)
    assert code == 0
    assert (summary["images"], summary["failed"], summary["skipped_kinds"]) == (1, 0, {"raw": 2})
    done = _cli("build", str(lib), "--index", str(tmp_path / "index"), env=env)
    assert "2 RAW files (pip install 'photo-index[raw]' to index them)" in done.stdout


def test_thumbnails_show_raws_upright_like_any_picture(library):
    """The UI and reports read thumbnails through the catalog: a RAW gets one, upright (the
    portrait shape of the turned sensor image), and it is the RAW's picture."""
    cat = Catalog(library["index"], readonly=True)
    try:
        recs = {Path(r["path"]).name: r for r in cat.records()}
        for name, twin_name in (("IMG_0412.CR2", "IMG_0412.JPG"), ("DSC_0001.NEF", "dsc_0001.jpg")):
            data = thumbnail_bytes(cat, recs[name]["content_id"], 128)
            assert data is not None, name
            thumb = Image.open(io.BytesIO(data))
            assert thumb.format == "JPEG" and thumb.height == 128 and thumb.width < 128
            twin, _ = imaging.open_image(library["lib"] / twin_name)
            assert np.abs(_grey(thumb) - _grey(twin)).mean() < 8  # the same picture
    finally:
        cat.close()


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (imaging.DecodeOptions(max_megapixels=0.05), "too many megapixels (320x240 = 0.1 MP > "),
        (imaging.DecodeOptions(max_decode_mb=0.2), "MB of memory to demosaic (320x240 RAW) > "),
    ],
)
def test_a_demosaic_over_the_limits_is_refused_before_it_runs(options, reason):
    with pytest.raises(imaging.ImageError) as refused:
        imaging.open_image(PATTERN, options)
    assert refused.value.stage == "decode" and reason in refused.value.reason
    # a preview big enough is used whatever the sensor's size: it is all that is decoded
    _, meta = imaging.open_image(BIRD, imaging.DecodeOptions(max_megapixels=0.3))
    assert meta.pixels_from == raw.PREVIEW and (meta.width, meta.height) == (576, 640)


def test_the_duplicates_page_shows_raw_thumbnails_and_marks_pairs(library, monkeypatch):
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(library["index"]))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/duplicates.py").run()
    assert not at.exception
    texts = [m.value for m in at.markdown]
    assert ":green-badge[KEEP] :blue-badge[RAW+JPEG pair] `DSC_0001.NEF`" in texts
    assert ":gray-badge[copy] :blue-badge[RAW+JPEG pair] `dsc_0001.jpg`" in texts
    shown = {p.stem for p in (library["index"] / "thumbs").rglob("*.jpg")}
    recs = _records(library["index"])
    assert {recs[n]["hash"] for n in ("IMG_0412.CR2", "DSC_0001.NEF")} <= shown  # drawn as any


def test_index_dedup_says_which_groups_are_one_shot(library):
    done = _cli("dedup", "--index", str(library["index"]))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if "DSC_0001.NEF  [" in line) - 1
    assert lines[head].endswith(", one RAW+JPEG shot (a pair, nothing to clean up)")
    assert lines[head + 2].endswith("dsc_0001.jpg  (RAW+JPEG pair: left in place)")
    assert any(line.endswith("IMG_0412-edit.jpg") for line in lines)  # a copy to clean up


def test_a_raw_dropped_on_the_search_page_finds_its_indexed_copy(library, monkeypatch):
    """An upload's file name says RAW, as a path's suffix does: LibRaw decodes it (Pillow alone
    would read a DNG as a TIFF), so the indexed copy comes first with the same vector."""
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(library["index"]))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["upload_bytes"] = (library["lib"] / "DSC_0001.NEF").read_bytes()
    at.session_state["upload_name"] = "DSC_0001.NEF"
    at.run()
    assert not at.exception and not at.error
    ranks = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert ranks[0] == "**#1** · 1.0000 · `DSC_0001.NEF`"
