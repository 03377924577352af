"""What decoders say about a photo reaches the user as one line naming it, never raw.

Real fixture photos re-saved the way cameras and old tools leave them: a JPEG whose EXIF block
is cut short (Pillow: "Truncated File Read") and a JPEG with a broken multi-picture (MPF)
block, as some cameras write (Pillow: "Image appears to be a malformed MPO file...").
"""

from __future__ import annotations

import os
import shutil
import struct

import pytest
from conftest import PHOTOS, TINY_BIRDER, index_cli
from PIL import Image

from indexer import decoder_notes

TRUNCATED = "Truncated File Read"
MPO = "Image appears to be a malformed MPO file"


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """A library of 3 photos, 2 of which make Pillow warn when decoded."""
    lib = tmp_path_factory.mktemp("noisy")
    cat = Image.open(PHOTOS / "flat" / "cat.jpg")
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0132] = "2009:01:01 10:00:00"
    cat.save(lib / "cut exif.jpg", exif=exif.tobytes()[:-8])  # the EXIF block ends early
    bee = (PHOTOS / "flat" / "bee.jpg").read_bytes()
    mpf = b"MPF\x00II*\x00\x08\x00\x00\x00" + bytes(4)  # an MPF block with no entries
    app2 = b"\xff\xe2" + struct.pack(">H", len(mpf) + 2) + mpf
    (lib / "bad mpo.jpg").write_bytes(bee[:2] + app2 + bee[2:])
    shutil.copy(PHOTOS / "flat" / "books.jpg", lib / "books.jpg")
    return lib


def build(noisy, tmp_path, *flags: str):
    index = tmp_path / "index"
    args = ["build", noisy, "--index", index, "--weights", TINY_BIRDER, "--workers", "1"]
    return index_cli(*map(str, args), *flags)


def test_each_warning_is_one_line_naming_the_photo_and_nothing_raw(noisy, tmp_path):
    done = build(noisy, tmp_path, "-q")
    assert done.returncode == 0, done.stderr  # warned, but indexed: not a failure
    lines = done.stderr.splitlines()
    assert sorted(lines) == [
        f"warning: {noisy / name}: the decoder reported a problem in this file; it was read as "
        "far as it goes (--verbose shows the decoder's words)"
        for name in ("bad mpo.jpg", "cut exif.jpg")
    ]
    # -q: no progress bar, and the summary still printed, in one line
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith("new 3 · ") and "embedded 3 · 3 images · " in done.stdout


def test_verbose_shows_the_decoders_own_words(noisy, tmp_path):
    done = build(noisy, tmp_path, "--verbose")
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2
    said = dict(line.split(": the decoder said: ", 1) for line in warned)
    assert TRUNCATED in said[f"warning: {noisy / 'cut exif.jpg'}"]
    assert MPO in said[f"warning: {noisy / 'bad mpo.jpg'}"]
    assert "UserWarning" not in done.stderr and "warnings.warn" not in done.stderr
    assert "2 pictures indexed with decoder warnings" in done.stdout


def test_what_a_c_library_prints_on_stderr_is_caught_too(capfd):
    """libtiff and other C decoders write straight to file descriptor 2."""
    with decoder_notes.caught(stderr=True) as notes:
        os.write(2, b"TIFFReadDirectory: Warning, Unknown field with tag 65000.\n")
    assert notes == ["TIFFReadDirectory: Warning, Unknown field with tag 65000."]
    assert capfd.readouterr().err == ""
