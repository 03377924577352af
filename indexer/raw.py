"""RAW camera files (CR2, CR3, NEF, ARW, RAF, ORF, RW2, DNG...) through LibRaw (`rawpy`).

A RAW's pixels for the encoder and pHash are its embedded preview JPEG when that is at least
`min_preview` px on its shorter side (no demosaic: fast), else a half-size demosaic with the
camera's white balance; either is turned by the RAW's orientation. Sizes are the sensor image's.
Without rawpy (the `[raw]` extra) RAW files are skipped at scan time (kinds.RAW), not failed.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image

from indexer import exif as exif_meta
from indexer.kinds import RAW_SUFFIXES

# rawpy warns in every forked decode worker: LibRaw's OpenMP pool (its own libgomp) can deadlock
# in a child forked while the parent's pool runs. A build's parent never decodes a RAW while it
# has workers (workers=0 decodes in the parent and forks nothing), so the pool starts in the child.
warnings.filterwarnings(
    "ignore", message="rawpy is being used in a process created by multiprocessing"
)
PREVIEW, DEMOSAIC = "preview", "demosaic"  # ImageMeta.pixels_from: which pixels were used
INSTALL_HINT = "pip install 'photo-index[raw]'"
# LibRaw's `flip` (dcraw's bit field) -> the EXIF orientation that turns the picture upright
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class RawError(Exception):
    """A RAW file that cannot be used: `stage` and `reason` go to the failure ledger."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


@dataclass
class RawPicture:
    """A decoded RAW: upright RGB pixels, the sensor image's size as displayed, which pixels
    were used (PREVIEW or DEMOSAIC), and the date taken and camera from its metadata."""

    image: Image.Image
    width: int
    height: int
    pixels_from: str
    taken_at: str | None
    camera: str | None


@functools.cache
def _rawpy() -> Any:
    """rawpy (the [raw] extra), imported on the first RAW file, or None when not installed."""
    try:
        import rawpy
    except ImportError:
        return None
    return rawpy


def available() -> bool:
    """Can RAW files be decoded here (is rawpy installed)?"""
    return _rawpy() is not None


def is_raw(name: str | os.PathLike[str]) -> bool:
    """Does this file name say RAW (by suffix, case-insensitive)?"""
    return os.path.splitext(os.fspath(name))[1].lower() in RAW_SUFFIXES


@dataclass(frozen=True)
class Limits:
    """What one RAW decode may cost: the shorter side a preview needs to be used, and the
    megapixel and memory guards (imaging.DecodeOptions) checked before a demosaic."""

    min_preview: int
    max_megapixels: float
    max_decode_mb: float
    draft_to: int | None = None  # decode a JPEG preview at a reduced scale (>= 2x this)


def decode(data: bytes, limits: Limits) -> RawPicture:
    """Decode a RAW file's bytes; RawError with LibRaw's reason when it cannot be used."""
    rawpy = _rawpy()
    if rawpy is None:
        raise RawError("decode", f"a RAW file: {INSTALL_HINT} to index it")
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            orientation = _FLIP_TO_ORIENTATION.get(int(sizes.flip) & 7, 1)
            width, height = int(sizes.width), int(sizes.height)
            preview, preview_exif = _preview(raw, limits)
            if preview is not None:
                image = _upright(preview, orientation)
                source = PREVIEW
            else:
                _check_demosaic(sizes, len(data), limits)
                rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
                image, source = Image.fromarray(np.ascontiguousarray(rgb), "RGB"), DEMOSAIC
            # LibRaw's date unpacks the whole mosaic first: read only once it is unpacked
            stamp = raw.other.timestamp if source == DEMOSAIC else None
    except RawError:
        raise
    except rawpy.LibRawError as exc:
        raise RawError("decode", f"LibRaw cannot read this RAW file: {_words(exc)}") from None
    taken, camera = _metadata(data, preview_exif)
    if taken is None and isinstance(stamp, datetime) and stamp.year > 1970:
        taken = stamp.replace(microsecond=0).isoformat()
    if orientation in (5, 6, 7, 8):  # the sensor image as displayed
        width, height = height, width
    return RawPicture(image, width, height, source, taken, camera)


def _words(exc: BaseException) -> str:
    """LibRaw's message (rawpy passes bytes) as text."""
    arg = exc.args[0] if exc.args else type(exc).__name__
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text or type(exc).__name__


def _preview(raw: Any, limits: Limits) -> tuple[Image.Image | None, Image.Exif | None]:
    """The embedded preview, loaded, when it is big enough to stand for the picture (else
    None), and the EXIF LibRaw wrote into it (date and camera, for RAWs that are not TIFF)."""
    rawpy = _rawpy()
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:  # no preview, or one LibRaw cannot hand over
        return None, None
    exif = None
    try:
        if thumb.format == rawpy.ThumbFormat.BITMAP:
            img = Image.fromarray(np.ascontiguousarray(thumb.data)).convert("RGB")
        else:
            img = Image.open(io.BytesIO(thumb.data))
            exif = img.getexif()
        w, h = img.size
        if min(w, h) < limits.min_preview or w * h / 1e6 > limits.max_megapixels:
            return None, exif
        if limits.draft_to and img.format == "JPEG":
            scale = 2 * limits.draft_to / min(w, h)
            if scale <= 0.5:
                img.draft("RGB", (int(w * scale) + 1, int(h * scale) + 1))
        img.load()
    except (OSError, SyntaxError, ValueError):
        return None, exif  # a broken preview: the demosaic still gives the picture
    return img, exif


def _upright(img: Image.Image, orientation: int) -> Image.Image:
    """The preview turned by the RAW's orientation (LibRaw's `flip`, as an EXIF value)."""
    method = _TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


def _check_demosaic(sizes: Any, file_bytes: int, limits: Limits) -> None:
    """Refuse a demosaic over the megapixel or memory limits before LibRaw unpacks anything.

    Memory: the file's bytes (ours and LibRaw's buffer), the raw mosaic (2 bytes a photosite),
    LibRaw's half-size 4 x 16-bit image, and the 8-bit RGB result and its Pillow copy.
    """
    w, h = int(sizes.width), int(sizes.height)
    mp = w * h / 1e6
    if mp > limits.max_megapixels:
        raise RawError(
            "decode",
            f"too many megapixels ({w}x{h} = {mp:.1f} MP > {limits.max_megapixels:g} MP); "
            "raise it with --max-megapixels",
        )
    half = ((w + 1) // 2) * ((h + 1) // 2)
    mosaic = int(sizes.raw_width) * int(sizes.raw_height) * 2
    need = (2 * file_bytes + mosaic + half * (8 + 3 + 3)) / (1 << 20)
    if need > limits.max_decode_mb:
        raise RawError(
            "decode",
            f"needs {need:,.0f} MB of memory to demosaic ({w}x{h} RAW) > "
            f"{limits.max_decode_mb:g} MB; raise it with --max-decode-mb or "
            "PHOTO_INDEX_MAX_DECODE_MB",
        )


def _metadata(data: bytes, preview_exif: Image.Exif | None) -> tuple[str | None, str | None]:
    """Date taken and camera: the RAW's own TIFF/EXIF tags (CR2, NEF, ARW, DNG, PEF... are
    TIFF inside), else the EXIF LibRaw writes into the preview it hands over."""
    taken = camera = None
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        tags = Image.Exif()
        try:
            tags.load(data)
            taken, camera = exif_meta.taken_and_camera(tags)
        except Exception:  # noqa: BLE001 - broken tags are no metadata, not a broken RAW
            pass
    if taken is None or camera is None:
        t2, c2 = exif_meta.taken_and_camera(preview_exif)
        taken, camera = taken or t2, camera or c2
    return taken, camera
