"""Decode memory is bounded by bytes: a 290 KB PNG that decodes to 12200x12200 16-bit grey
(about 1 GB on the way to RGB) is refused from its header, before any pixel is allocated."""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from conftest import PHOTOS, TINY_BIRDER, index_cli
from PIL import Image

from indexer import imaging
from indexer.store.catalog import Catalog

SIDE = 12200
REFUSAL = "MB of memory to decode (12200x12200, mode I;16) > 768 MB; raise it with --max-decode-mb"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey16_png(path: Path, width: int, height: int) -> Path:
    """A black 16-bit grey PNG, compressed row by row: never holds more than one row."""
    pack = zlib.compressobj(9)
    row = b"\0" * (1 + 2 * width)  # filter byte + pixels
    idat = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    chunks = _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


PROBE = """
import json, sys
from indexer import imaging

def peak_mb():  # this process's own high-water mark (ru_maxrss would inherit pytest's)
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024

base = peak_mb()
try:
    imaging.open_image(sys.argv[1])
    reason = None
except imaging.ImageError as exc:
    reason = exc.reason
print(json.dumps({"reason": reason, "peak_mb": peak_mb(), "base_mb": base}))
"""


def test_refused_from_the_header_in_little_memory(tmp_path):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    png = grey16_png(tmp_path / "big.png", SIDE, SIDE)
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert png.stat().st_size < 400_000 and grew_mb < 50  # the test itself stays small
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(png)], capture_output=True, text=True, timeout=60
    )
    result = json.loads(probe.stdout)
    assert result["reason"] is not None and REFUSAL in result["reason"]
    assert result["peak_mb"] - result["base_mb"] < 20  # was 3.8 GB (and a timeout in a build)
    assert result["peak_mb"] < 200


def test_build_ledgers_it_and_search_refuses_it_in_one_line(tmp_path):
    photos, index = tmp_path / "photos", tmp_path / "index"
    photos.mkdir()
    shutil.copy(PHOTOS / "flat" / "cat.jpg", photos / "cat.jpg")
    big = grey16_png(photos / "scan.png", SIDE, SIDE)
    weights = ["--weights", str(TINY_BIRDER)]
    built = index_cli("build", str(photos), "--index", str(index), *weights, "--workers", "1", "-q")
    assert built.returncode == 3, built.stderr  # finished, one file failed
    failures = Catalog(index, readonly=True).failures()
    assert [(f["path"], f["stage"]) for f in failures] == [(str(big), "decode")]
    assert REFUSAL in failures[0]["reason"]

    found = index_cli("search", str(big), "--index", str(index), *weights)
    assert found.returncode == 1 and found.stdout == ""
    assert found.stderr.count("\n") == 1 and found.stderr.startswith(f"error: {big}: needs ")
    assert "PHOTO_INDEX_MAX_DECODE_MB" in found.stderr

    query = tmp_path / "query.png"  # 1000x800 RGB: 3 MB decoded
    Image.open(PHOTOS / "flat" / "cat.jpg").resize((1000, 800)).save(query)
    os.environ["PHOTO_INDEX_MAX_DECODE_MB"] = "1"  # the setting is honoured
    try:
        raised = index_cli("search", str(query), "--index", str(index), *weights)
    finally:
        del os.environ["PHOTO_INDEX_MAX_DECODE_MB"]
    assert raised.returncode == 1 and "> 1 MB" in raised.stderr


def test_the_bound_counts_the_conversion_to_rgb():
    assert imaging.decode_bytes("RGB", (1000, 1000)) == 4_000_000  # Pillow keeps RGB in 4 bytes
    assert imaging.decode_bytes("L", (1000, 1000)) == 5_000_000  # + RGB
    assert imaging.decode_bytes("I;16", (1000, 1000)) == 7_000_000  # + 8-bit grey + RGB
    assert imaging.decode_bytes("P", (1000, 1000), transparency=True) == 9_000_000  # via RGBA
    # Every RGB picture the 150 MP default lets through fits the default byte limit.
    assert imaging.decode_bytes("RGB", (15000, 10000)) / 2**20 < imaging.DEFAULT_MAX_DECODE_MB


def test_wide_greys_convert_in_strips_to_the_same_pixels():
    rng = np.random.default_rng(0)
    cases = [
        Image.fromarray(rng.integers(0, 65535, (700, 333), dtype=np.uint16)),
        Image.fromarray(rng.integers(0, 200, (600, 301)).astype(np.int32), "I"),
        Image.fromarray(rng.integers(-5, 3000, (600, 301)).astype(np.int32), "I"),
        Image.fromarray((rng.random((555, 300)) * 300).astype(np.float32), "F"),
    ]
    for img in cases:  # the whole-picture formula of the preprocessing contract
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        want = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        got = np.asarray(imaging.to_rgb(img))
        assert np.array_equal(got[..., 0], want) and np.array_equal(got[..., 2], want), img.mode


def test_the_ui_refuses_the_upload_with_the_same_message(tmp_path, monkeypatch, tiny_encoder):
    from streamlit.testing.v1 import AppTest

    from indexer.build import build
    from indexer.settings import Settings

    photos, index = tmp_path / "photos", tmp_path / "index"
    photos.mkdir()
    shutil.copy(PHOTOS / "flat" / "cat.jpg", photos / "cat.jpg")
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build([photos], settings, encoder=tiny_encoder)
    for name, value in (("INDEX", index), ("WEIGHTS", TINY_BIRDER), ("DEVICE", "cpu")):
        monkeypatch.setenv(f"PHOTO_INDEX_{name}", str(value))
    upload = grey16_png(tmp_path / "scan.png", SIDE, SIDE).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "search_ui" / "app.py"))
    at.session_state["upload_bytes"] = upload
    at.run(timeout=60)
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert not at.exception
    assert "Cannot search with this image" in at.error[0].value
    shown = at.error[0].value.replace("\\", "")  # the page escapes Markdown
    assert "MB of memory to decode (12200x12200, mode I;16) > 768 MB" in shown
    assert "PHOTO_INDEX_MAX_DECODE_MB" in shown
    assert grew_mb < 200  # was 5.4 GB
