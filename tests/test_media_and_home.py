"""A real library holds videos, documents and sidecars, and maybe the index itself: none of
them is a failure, and the index never indexes its own catalog or thumbnails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import PHOTOS, TINY_BIRDER, index_cli
from typer.testing import CliRunner

from indexer import files as fs
from indexer.cli import app
from indexer.settings import Settings
from indexer.store.catalog import Catalog
from indexer.thumbs import thumbnail_bytes

ROOT = Path(__file__).resolve().parent.parent
CAT = PHOTOS / "flat" / "cat.jpg"
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64
MOV = b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + b"\x00" * 64
SKIPPED = {"video": 2, "audio": 1, "document": 2, "sidecar": 1, "other": 1}


def library(folder: Path) -> Path:
    """Three photos with what lives beside them in a real photo folder."""
    folder.mkdir()
    for name in ("cat.jpg", "bee.jpg", "tree.webp"):
        shutil.copy(PHOTOS / "flat" / name, folder / name)
    (folder / "clip.mp4").write_bytes(MP4)
    (folder / "IMG_0001.MOV").write_bytes(MOV)
    (folder / "trip.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    (folder / "cat.xmp").write_text('<x:xmpmeta xmlns:x="adobe:ns:meta/"/>\n')
    (folder / "README.txt").write_text("photos of the summer\n")
    (folder / "song.mp3").write_bytes(b"ID3\x04\x00\x00" + b"\x00" * 64)
    (folder / "blob").write_bytes(bytes(range(256)))  # no name, no signature: "other"
    return folder


def cli(*args: str):
    """`index build ...` in this process with the tiny weights and one decode worker."""
    return CliRunner().invoke(app, [*args, "--weights", str(TINY_BIRDER), "--workers", "1"])


def test_videos_documents_and_sidecars_are_skipped_not_failed(tmp_path):
    photos = library(tmp_path / "photos")
    index = str(tmp_path / "index")
    first = cli("build", str(photos), "--index", index)
    assert first.exit_code == 0, first.output
    assert "skipped: 2 videos, 1 audio file, 2 documents, 1 sidecar, 1 other file" in first.stdout
    assert "new 3 ·" in first.stdout and "failed 0" in first.stdout
    assert "ledger:" not in first.stdout
    again = cli("build", str(photos), "--index", index, "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert (data["unchanged"], data["new"], data["failed"], data["ledger"]) == (3, 0, 0, 0)
    assert data["skipped"] == sum(SKIPPED.values()) and data["skipped_kinds"] == SKIPPED
    assert Catalog(index, readonly=True).failures() == []


def test_a_broken_picture_fails_once_then_waits_in_the_ledger(tmp_path):
    photos = library(tmp_path / "photos")
    (photos / "broken.jpg").write_bytes(CAT.read_bytes()[:2000])
    index = str(tmp_path / "index")
    first = cli("build", str(photos), "--index", index, "--json")
    assert first.exit_code == 3, first.output
    data = json.loads(first.stdout)
    assert (data["failed"], data["ledger"], data["images"]) == (1, 1, 3)
    again = cli("build", str(photos), "--index", index)  # unchanged: nothing new failed
    assert again.exit_code == 0, again.output
    assert "failed 0" in again.stdout and "ledger: 1 file (index failures)" in again.stdout
    assert "could not be indexed" not in again.stdout
    retried = cli("build", str(photos), "--index", index, "--retry-failed", "--json")
    assert retried.exit_code == 3 and json.loads(retried.stdout)["failed"] == 1
    [entry] = Catalog(index, readonly=True).failures()
    assert entry["path"] == str(photos / "broken.jpg") and entry["attempts"] == 2


def test_content_that_claims_a_picture_wins_over_the_name(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "scan.txt").write_bytes(CAT.read_bytes())  # a JPEG named .txt: indexed
    (d / "letter.jpg").write_text("a text file named like a picture\n" * 5)  # decoder: ledger
    (d / "clip.jpg").write_bytes(MP4)  # the name claims a picture: the decoder says no
    (d / "IMG_1.CR3").write_bytes(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01" + b"\x00" * 64)
    (d / "empty.jpg").write_bytes(b"")
    (d / "empty.txt").write_bytes(b"")
    (d / "notes").write_text("shopping list\n")
    (d / "photos.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    (d / "movie").write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 64)
    (d / "sound").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64)
    (d / "film.avi").write_bytes(b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 64)  # content wins
    os.mkfifo(d / "pipe.jpg")
    found = fs.scan([d])
    assert {Path(e.path).name for e in found.images} == {
        "scan.txt", "letter.jpg", "clip.jpg", "IMG_1.CR3", "film.avi",
    }  # fmt: skip
    assert [(Path(e.path).name, why) for e, why in found.not_images] == [
        ("empty.jpg", "empty file (0 bytes)")
    ]
    assert found.skipped_kinds == {
        "document": 2, "archive": 1, "video": 1, "audio": 1, "special": 1,
    }  # fmt: skip
    assert found.skipped == 6 and not found.errors


def test_the_index_home_is_never_walked_whatever_path_reaches_it(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CAT, photos / "cat.jpg")
    home = photos / "idx"
    (home / "thumbs").mkdir(parents=True)
    shutil.copy(CAT, home / "thumbs" / "t.jpg")
    (home / "catalog.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    (tmp_path / "link").symlink_to(photos, target_is_directory=True)
    (photos / "shortcut").symlink_to(home, target_is_directory=True)
    named_via_link = tmp_path / "link" / "idx"
    for roots, expected in [
        ([photos], {"cat.jpg"}),
        ([tmp_path / "link"], {"cat.jpg"}),
        ([photos, home], {"cat.jpg"}),
        ([home], set()),
        ([home / "thumbs"], set()),
        ([home / "thumbs" / "t.jpg"], set()),
    ]:
        found = fs.scan(roots, never=[named_via_link])
        assert {Path(e.path).name for e in found.images} == expected, roots
        assert (found.skipped, found.not_images, found.errors) == (0, [], []), roots
    assert {Path(e.path).name for e in fs.scan([photos]).images} == {"cat.jpg", "t.jpg"}


def test_an_index_inside_the_photos_never_indexes_itself(tmp_path, monkeypatch):
    photos = library(tmp_path / "photos")
    monkeypatch.chdir(photos)
    first = cli("build", ".", "--index", "./idx", "--json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert (data["new"], data["failed"], data["ledger"]) == (3, 0, 0)
    assert data["index"] == str(photos / "idx")
    cat = Catalog(photos / "idx")
    for record in cat.records():  # what `index serve` leaves behind
        assert thumbnail_bytes(cat, record["content_id"], 256)
    cat.close()
    assert len(list((photos / "idx" / "thumbs").rglob("*.jpg"))) == 3
    (photos / "shortcut").symlink_to(photos / "idx", target_is_directory=True)
    again = cli("build", ".", "--index", "./idx", "--json")
    assert again.exit_code == 0, again.output
    d = json.loads(again.stdout)
    assert (d["new"], d["changed"], d["moved"], d["deleted"], d["embedded"]) == (0, 0, 0, 0, 0)
    assert (d["unchanged"], d["failed"], d["ledger"], d["images"]) == (3, 0, 0, 3)
    assert d["skipped_kinds"] == SKIPPED
    cat = Catalog(photos / "idx", readonly=True)
    assert {os.path.dirname(r["path"]) for r in cat.records()} == {str(photos)}
    assert cat.failures() == []


def test_the_default_index_home_is_the_per_user_data_folder(tmp_path):
    photos = library(tmp_path / "photos")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTO_INDEX_")}
    env["XDG_DATA_HOME"] = str(photos / "user data")  # even inside the photos
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    home = photos / "user data" / "photo-index" / "index"

    def index(*args: str) -> subprocess.CompletedProcess:
        return index_cli(*args, cwd=photos, env=env)

    built = index("build", ".", "--weights", str(TINY_BIRDER), "--workers", "1")
    assert built.returncode == 0, built.stderr
    assert f"index home: {home}" in built.stdout
    assert (home / "catalog.sqlite").is_file() and not (photos / "data").exists()
    again = index("build", ".", "--weights", str(TINY_BIRDER), "--workers", "1", "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert (data["unchanged"], data["new"], data["deleted"], data["ledger"]) == (3, 0, 0, 0)
    assert data["skipped_kinds"] == SKIPPED  # the catalog files were not even looked at
    stats = index("stats", "--json")
    assert json.loads(stats.stdout)["index"] == str(home)
    elsewhere = str(tmp_path / "elsewhere")
    assert Settings.from_env(env={"PHOTO_INDEX_INDEX": elsewhere}).index == Path(elsewhere)
    assert Settings.from_env(env={"PHOTO_INDEX_INDEX": elsewhere}, index="x").index == Path("x")
