"""Generate a hostile-input corpus (nothing committed): every way a photo folder goes wrong.

`make_corpus(folder)` writes the files and returns {relative name: expectation}, where the
expectation is "indexed" or the substring the failure ledger's reason must contain.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

PHOTO = Path(__file__).resolve().parent / "fixtures" / "photos" / "flat" / "cat.jpg"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header declares `width` x `height` pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_corpus(folder: Path, empty_files: int = 10_000) -> dict[str, str]:
    """Write the hostile corpus into `folder`; returns what must happen to each file."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(PHOTO).convert("RGB")
    jpeg = PHOTO.read_bytes()
    png = _save(photo, "PNG")
    expect: dict[str, str] = {}

    def put(name: str, data: bytes, expectation: str) -> None:
        (folder / name).write_bytes(data)
        expect[name] = expectation

    put("truncated.jpg", jpeg[: len(jpeg) // 3], "truncated")
    put("truncated.png", png[: len(png) // 3], "truncated")
    put("zero.jpg", b"", "empty file")
    put("text.jpg", b"hello, I am not a picture\n" * 20, "not an image")
    put("jpeg-named.png", jpeg, "indexed")
    put("bomb.png", png_bomb(), "too many megapixels")
    put("one-pixel.png", _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "indexed")
    put("long-strip.png", _save(Image.new("RGB", (20000, 4), (10, 200, 10)), "PNG"), "indexed")
    put("cmyk.jpg", _save(photo.convert("CMYK"), "JPEG"), "indexed")
    grey16 = Image.new("I;16", (64, 48))
    grey16.putdata([(x * 1000) % 65535 for x in range(64 * 48)])
    put("sixteen-bit.png", _save(grey16, "PNG"), "indexed")
    pal = photo.resize((64, 48)).convert("P", palette=Image.ADAPTIVE, colors=16)
    put("palette-transparent.png", _save(pal, "PNG", transparency=0), "indexed")
    broken_exif = bytearray(jpeg)
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\xff\xff\xff\xff"
    segment = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    put("broken-exif.jpg", bytes(broken_exif[:2]) + segment + bytes(broken_exif[2:]), "indexed")
    frames = [photo.resize((80, 60)).rotate(a) for a in (0, 90, 180)]
    put("animated.gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:]), "indexed")
    put(
        "animated.webp",
        _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "indexed",
    )
    put("emoji 📷 name.jpg", _variant(photo, 1), "indexed")
    put("new\nline.jpg", _variant(photo, 2), "indexed")
    raw = os.fsencode(folder) + b"/latin1-\xe9t\xe9.jpg"
    with open(raw, "wb") as fh:
        fh.write(_variant(photo, 3))
    expect[os.fsdecode(b"latin1-\xe9t\xe9.jpg")] = "not valid UTF-8"
    loop = folder / "loop"
    loop.mkdir()
    (loop / "back").symlink_to(folder, target_is_directory=True)
    (folder / "dangling.jpg").symlink_to(folder / "does-not-exist.jpg")
    expect["dangling.jpg"] = "dangling symlink"
    empties = folder / "empties"
    empties.mkdir()
    for i in range(empty_files):
        (empties / f"e{i:05d}.jpg").touch()
    return expect


def _variant(photo: Image.Image, seed: int) -> bytes:
    """A distinct small JPEG (so each named file is its own content)."""
    return _save(photo.rotate(seed * 7).resize((120 + seed, 90)), "JPEG", quality=80)
