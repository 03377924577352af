"""What a file's own pixels and headers say about how it was made, for the keep rule and for
telling copies from edits (confirm.py): lossless or lossy, JPEG's 8×8 block grid in a lossless
file, the JPEG quality its quantisation tables imply, greyscale, clipped pixels, a small thumb.

Only files in duplicate groups are read, each at most once per report (scalars are kept, the
thumbs in a bounded cache). A file that is gone, changed since it was indexed, or unreadable has
no evidence: the signals that need it then stay silent (never a guess).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from indexer import files, imaging, raw
from indexer.dedup.cells import one_blas_thread

THUMB = 256  # the thumb a picture is compared at (fits in THUMB × THUMB)
GRID_CROP = 256  # the block grid is measured on the central GRID_CROP × GRID_CROP pixels
GRID_RATIO = 1.2  # near-zero DCT share at the best 8×8 offset over the median offset's
NEAR_ZERO = 0.6  # |AC coefficient| below this (0–255 luma, orthonormal DCT) counts as zeroed
CLIP_HIGH, CLIP_LOW = 254, 1  # a pixel whose brightest channel is ≥ 254 (or ≤ 1) is clipped
GREY_CHROMA = 2.5  # mean (max − min channel) under this: a greyscale picture
FLAT_LEVELS = 2  # a "flat" pixel is within this many grey levels of the most common level
CACHE_THUMBS = 512  # thumbs kept (≤ 192 KiB each, ≤ 96 MiB): bounded, whatever the library size
LOSSLESS = frozenset({"PNG", "BMP", "PPM", "GIF", "TGA", "QOI", "PCX", "SGI", "ICO", "DIB"})
LOSSY = frozenset({"JPEG", "MPO", "HEIF", "HEIC", "AVIF"})
# IJG's standard luminance table (natural order): the reference the quality scale is set from
IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56]
    + [14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104]
    + [113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float32,
)
SOURCE_STEP = 3  # quantiser steps from which a coefficient's rounding is measurable (noise ≈ 1)
SOURCE_ERROR = 0.15  # mean distance to the step's multiples under which a table fits (else ≈ .25)


@dataclass
class Look:
    """One file's evidence; `thumb` (uint8, fits in THUMB²) is dropped when cached."""

    lossless: bool | None  # None: a format that can be either (JPEG 2000, WebP we cannot read)
    grid: float | None  # block-grid ratio of a lossless file (≥ GRID_RATIO: decoded from a JPEG)
    quality: int | None  # IJG quality estimated from a JPEG's luminance table
    source: int | None  # a lossless file with the grid: the quality of the JPEG it came from
    grey: bool
    clipped: float  # share of clipped pixels (CLIP_HIGH/CLIP_LOW)
    flat: float  # share of thumb pixels at the most common grey level (±FLAT_LEVELS)
    thumb: np.ndarray | None = None

    def fields(self) -> dict[str, Any]:
        """The scalars the keep rule reads from a member (signals.py), as record fields."""
        return {
            "lossless": self.lossless,
            "jpeg_grid": None if self.grid is None else self.grid >= GRID_RATIO,
            "jpeg_quality": self.quality,
            "jpeg_source": self.source,
            "grey": self.grey,
            "clipped": self.clipped,
            "evidence": True,
        }


def jpeg_quality(tables: dict[int, Any] | None) -> int | None:
    """The IJG quality (1–100) whose scaled standard table best matches the luminance table
    (by sum: the order tables are stored in does not matter); None without tables."""
    if not tables or 0 not in tables:
        return None
    scale = 100.0 * sum(tables[0]) / float(IJG_LUMA.sum())
    quality = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return int(min(100, max(1, round(quality))))


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


_DCT_T = np.ascontiguousarray(_dct_matrix().T, dtype=np.float32)


def block_grid(luma: np.ndarray) -> tuple[float, int | None]:
    """(ratio, source quality): how much more JPEG-like (zeroed high-frequency DCT coefficients)
    the best-aligned 8×8 block grid is than a typical offset, on the central GRID_CROP² pixels
    (≈1 for a picture never stored as JPEG at this size, ≥1.27 even after a q98 JPEG; every
    offset is tried: a crop keeps the grid, shifted), and, when there is a grid, the quality of
    the JPEG those pixels were decoded from (`source_quality`; docs/dedup.md)."""
    h, w = luma.shape
    top, left = max(0, (h - GRID_CROP) // 2), max(0, (w - GRID_CROP) // 2)
    y = luma[top : top + GRID_CROP + 8, left : left + GRID_CROP + 8].astype(np.float32)
    if min(y.shape) < 24:
        return 1.0, None
    shares, best = [], (-1.0, np.empty(0))
    for ox in range(8):
        cols = (y.shape[1] - ox) // 8
        across = (y[:, ox : ox + cols * 8].reshape(-1, 8) @ _DCT_T).reshape(-1, cols, 8)
        for oy in range(8):
            rows = (y.shape[0] - oy) // 8
            block = across[oy : oy + rows * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 3, 1)
            coeffs = (block.reshape(-1, 8) @ _DCT_T).reshape(-1, 8, 8).transpose(0, 2, 1)
            share = float((np.abs(coeffs.reshape(-1, 64)[:, 1:]) < NEAR_ZERO).mean())
            shares.append(share)
            best = max(best, (share, coeffs), key=lambda b: b[0])
    base = float(np.median(shares))
    ratio = max(shares) / base if base > 0 else 1.0
    return ratio, source_quality(best[1]) if ratio >= GRID_RATIO else None


def ijg_table(quality: int) -> np.ndarray:
    """IJG's luminance table (8×8, natural order) at `quality` (1–100), as libjpeg scales it."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((IJG_LUMA * scale + 50) / 100), 1, 255).reshape(8, 8)


def source_quality(coeffs: np.ndarray) -> int | None:
    """The lowest IJG quality whose table the blocks' coefficients (N×8×8, vertical frequency
    first) sit on multiples of: a lower one has steps the coefficients miss. None: no table
    fits, or too few coefficients with steps ≥ SOURCE_STEP to tell (JPEGs over ≈ q97)."""
    coeffs = coeffs[:: max(1, len(coeffs) // 256)]  # 256 blocks tell as well as 1,024
    for quality in range(1, 101):
        table = ijg_table(quality)
        usable = table >= SOURCE_STEP
        usable[0, 0] = False  # the DC coefficient carries the level shift
        steps = table[usable]
        c = coeffs[:, usable]
        informative = np.abs(c) >= steps / 2  # zeros fit every table
        if informative.sum() < 200:
            continue
        ratio = c / steps
        if float(np.abs(ratio - np.round(ratio))[informative].mean()) < SOURCE_ERROR:
            return quality
    return None


def _lossless(img: Image.Image, fp: Any) -> bool | None:
    """From the header: True for lossless formats, False for lossy ones, None when unknown."""
    fmt = (img.format or "").upper()
    if fmt in LOSSY:
        return False
    if fmt == "TIFF":
        return "jpeg" not in str(img.info.get("compression", "")).lower()
    if fmt == "WEBP":
        fp.seek(12)
        chunk = fp.read(4)
        if chunk == b"VP8X":  # extended: the image chunk follows the optional ones
            fp.seek(0)
            head = fp.read(4096)
            return True if b"VP8L" in head else False if b"VP8 " in head else None
        return {b"VP8L": True, b"VP8 ": False}.get(chunk)
    return True if fmt in LOSSLESS else None


def read_look(
    path: str, size: int | None, mtime_ns: int | None, options: imaging.DecodeOptions
) -> Look | None:
    """The evidence of the file at `path` if it is still the file that was indexed (same size
    and modification time), else None; never raises for a bad or vanished file."""
    try:
        with files.open_regular(path) as fp:
            st = os.fstat(fp.fileno())
            if (size is not None and st.st_size != size) or (
                mtime_ns is not None and st.st_mtime_ns != mtime_ns
            ):
                return None
            if raw.is_raw(path):
                lossless, quality = None, None
            else:
                with Image.open(fp) as head:
                    lossless = _lossless(head, fp)
                    quality = jpeg_quality(getattr(head, "quantization", None))
        img, _ = imaging.open_image(path, options, draft_to=THUMB)
        return _measure(_opaque(img), lossless, quality)
    except Exception:  # noqa: BLE001 - evidence is optional: a bad file just has none
        return None


def _opaque(img: Image.Image) -> Image.Image:
    """RGB pixels as the pHash sees them: transparency over imaging.PHASH_BACKGROUND (white),
    so a logo and its JPEG export on white compare as the same pixels."""
    if not imaging.has_alpha(img):
        return imaging.to_rgb(img)
    return imaging.over_background(img.convert("RGBA")).convert("RGB")


def _measure(rgb: Image.Image, lossless: bool | None, quality: int | None) -> Look:
    pixels = np.asarray(rgb)
    top = pixels.max(axis=2)
    clipped = float(((top >= CLIP_HIGH) | (top <= CLIP_LOW)).mean())
    grid, source = None, None
    if lossless:
        grid, source = block_grid(np.asarray(rgb.convert("L")))
    scale = min(1.0, THUMB / max(rgb.size))
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    thumb = np.asarray(rgb.resize(size, Image.LANCZOS) if scale < 1 else rgb, dtype=np.uint8)
    chroma = float((thumb.max(axis=2).astype(np.int16) - thumb.min(axis=2)).mean())
    grey = np.asarray(Image.fromarray(thumb).convert("L"), dtype=np.int16)
    mode = int(np.bincount(grey.ravel(), minlength=256).argmax())
    flat = float((np.abs(grey - mode) <= FLAT_LEVELS).mean())
    return Look(lossless, grid, quality, source, chroma < GREY_CHROMA, clipped, flat, thumb)


class Looks:
    """The evidence of a report's grouped files, by content id: scalars kept for the run, thumbs
    in a bounded LRU cache (read again if evicted)."""

    def __init__(self, options: imaging.DecodeOptions | None = None, workers: int = 0) -> None:
        self.options = options or imaging.DecodeOptions()
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.known: dict[int, Look | None] = {}  # content id → scalars (thumb dropped)
        self._thumbs: OrderedDict[int, np.ndarray] = OrderedDict()
        self._records: dict[int, list[dict[str, Any]]] = {}

    def annotate(self, by_content: dict[int, list[dict[str, Any]]], cids: Iterable[int]) -> None:
        """Read the evidence of `cids` not read yet (in threads: decoders release the GIL) and
        write its scalars into their records (`Look.fields`) for the keep rule."""
        todo = sorted({c for c in cids if c not in self.known and c in by_content})
        for cid in todo:
            self._records[cid] = by_content[cid]
        if not todo:
            return
        # the DCTs are many small products: one BLAS thread each, the pool runs the threads
        with one_blas_thread(), ThreadPoolExecutor(self.workers) as pool:
            for cid, look in zip(todo, pool.map(self._read, todo), strict=True):
                self._keep(cid, look)
                if look is not None:
                    for rec in by_content[cid]:
                        rec.update(look.fields())

    def look(self, cid: int) -> tuple[Look | None, np.ndarray | None]:
        """(scalars, thumb) of a content annotated before; the thumb is read again if evicted."""
        look = self.known.get(cid)
        if look is None:
            return None, None
        thumb = self._thumbs.get(cid)
        if thumb is not None:
            self._thumbs.move_to_end(cid)
            return look, thumb
        again = self._read(cid)
        thumb = None if again is None else again.thumb
        if again is not None:
            self._keep(cid, again)
        return look, thumb

    def _read(self, cid: int) -> Look | None:
        for rec in self._records.get(cid, []):  # byte copies: the first one still readable
            look = read_look(rec["path"], rec.get("size"), rec.get("mtime_ns"), self.options)
            if look is not None:
                return look
        return None

    def _keep(self, cid: int, look: Look | None) -> None:
        if look is None:
            self.known[cid] = None
            return
        if look.thumb is not None:
            self._thumbs[cid] = look.thumb
            self._thumbs.move_to_end(cid)
            while len(self._thumbs) > CACHE_THUMBS:
                self._thumbs.popitem(last=False)
        look.thumb = None
        self.known[cid] = look
