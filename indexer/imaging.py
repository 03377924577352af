"""Open images safely and turn them into encoder input, metadata and perceptual hashes.

Everything that touches pixels lives here, so the preprocessing contract has one home
(docs/encoder.md, "Preprocessing"); workers, the encoder API and the UI call these functions.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from indexer import exif as exif_meta
from indexer import files, raw

try:  # optional: HEIC/HEIF/AVIF support
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installed extras
    HEIF_AVAILABLE = False

# Bump when anything below changes the pixels fed to the encoder: the index pins it.
PREPROCESS_VERSION = "clip-224-bicubic-v1"
IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_MAX_MEGAPIXELS = 150.0
# Memory one decode may hold (MiB): every RGB or 8-bit grey picture under 150 MP fits; 16-bit,
# float and alpha pictures are bounded by their bytes (see decode_bytes).
DEFAULT_MAX_DECODE_MB = 768.0
_WIDE_GREYS = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_STRIP_ROWS = 256  # rows converted at a time from 16-bit/float grey (float64 temporaries)
EXTREME_ASPECT = 8  # beyond 8:1 the centre crop is resampled directly (not bit-exact)
# pHash (dedup's near-identical tier), not the encoder's pixels: transparent pixels are seen
# over white; a 32x32 input whose grey levels vary less than FLAT_STD (of 255) gets no hash.
PHASH_VERSION = 2  # 1: alpha dropped, flat pictures hashed; recorded in the catalog's meta
PHASH_BACKGROUND = (255, 255, 255)
FLAT_STD = 2.0
MIN_HASH_BITS = 8
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")
NO_GHOSTSCRIPT = (
    "an EPS picture: drawing it needs Ghostscript, which is not installed (install the "
    "ghostscript package, then run index build --retry-failed)"
)


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode a user's picture: the size and memory limits, a per-picture timeout (decode
    worker processes only, 0: none) and the build's JPEG draft. Built once from `Settings`."""

    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    max_decode_mb: float = DEFAULT_MAX_DECODE_MB
    timeout: float = 0
    draft: bool = False  # decode JPEGs at a reduced scale (>= 2x IMAGE_SIZE): builds only

    @classmethod
    def from_settings(cls, settings: Any, *, draft: bool = False) -> DecodeOptions:
        """The options a `Settings` names (its limits and decode_timeout)."""
        return cls(
            float(settings.max_megapixels),
            float(settings.max_decode_mb),
            float(settings.decode_timeout),
            draft,
        )

    @property
    def draft_to(self) -> int | None:
        """The `open_image` draft size these options ask for (None: full decode)."""
        return IMAGE_SIZE if self.draft else None


class ImageError(Exception):
    """An image that cannot be used; `stage` and `reason` go to the failure ledger."""

    def __init__(self, path: str | Path, stage: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.stage = stage
        self.reason = reason


@dataclass
class ImageMeta:
    """What the catalog stores about a picture (dimensions as displayed, after EXIF rotation)."""

    width: int
    height: int
    format: str
    taken_at: str | None = None
    camera: str | None = None
    pixels_from: str | None = None  # RAW files: "preview" or "demosaic" (indexer.raw)


_READ_ERRORS = {
    FileNotFoundError: "file disappeared before it could be read",
    PermissionError: "permission denied",
    IsADirectoryError: "is a directory",
}


def _opened(source: str | Path | bytes) -> BinaryIO:
    """Bytes as a file, or a path opened only if it is a regular file (a FIFO must not block)."""
    return io.BytesIO(source) if isinstance(source, bytes) else files.open_regular(source)


def open_image(
    source: str | Path | bytes,
    options: DecodeOptions = DecodeOptions(),
    *,
    draft_to: int | None = None,
    name: str | None = None,
) -> tuple[Image.Image, ImageMeta]:
    """Open, check size and memory, decode the first frame and apply EXIF orientation.

    `draft_to` (pixels; default `options.draft_to`) lets JPEG decode at a reduced scale while
    the shorter side stays at least 2x that size (the contract's draft rule). Pictures over
    `options.max_megapixels` or needing more than `options.max_decode_mb` MiB (decode_bytes)
    are refused before any pixel is decoded. Raises ImageError with a reason naming `name`
    (default: the path, or "<upload>").
    """
    name = name or ("<upload>" if isinstance(source, bytes) else str(source))
    draft_to = options.draft_to if draft_to is None else draft_to
    if raw.is_raw(name):
        return _open_raw(source, options, draft_to, name)
    try:
        with _opened(source) as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
            fmt = img.format or "UNKNOWN"
            w, h = img.size
            _check_pixels(name, w, h, options.max_megapixels)
            if draft_to and fmt == "JPEG":
                short = min(w, h)
                scale = (2 * draft_to) / short
                if scale <= 0.5:  # only when at least a 2x reduction is possible
                    img.draft(img.mode, (int(w * scale) + 1, int(h * scale) + 1))
            _check_memory(name, img, options.max_decode_mb)  # before EXIF: a PNG's getexif decodes
            meta = _read_meta(img, fmt)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            orientation = img.getexif().get(_ORIENTATION, 1) if fmt != "UNKNOWN" else 1
            img = ImageOps.exif_transpose(img)
    except ImageError:
        raise
    except (FileNotFoundError, PermissionError, IsADirectoryError, files.NotRegularFileError) as e:
        raise ImageError(name, "read", _READ_ERRORS.get(type(e), e.strerror)) from None
    except UnidentifiedImageError:
        raise ImageError(name, "decode", "not an image (unknown or unsupported format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(
            name, "decode", f"too many megapixels, refused as a bomb ({exc})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "Ghostscript" in reason:  # Pillow draws EPS through the gs program
            raise ImageError(name, "decode", NO_GHOSTSCRIPT) from None
        if "truncated" in reason.lower():
            reason = f"truncated file ({reason})"
        raise ImageError(name, "decode", f"corrupt image: {reason}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder bug must not stop a run
        raise ImageError(name, "decode", f"{type(exc).__name__}: {exc}") from None
    # Displayed size of the full-resolution picture (draft may have decoded it smaller).
    meta.width, meta.height = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    return img, meta


def _open_raw(
    source: str | Path | bytes, options: DecodeOptions, draft_to: int | None, name: str
) -> tuple[Image.Image, ImageMeta]:
    """A RAW camera file through LibRaw (indexer.raw): its preview or a half-size demosaic,
    upright; the size is the sensor image's, the format the RAW's suffix (DNG, CR2, NEF...)."""
    limits = raw.Limits(2 * IMAGE_SIZE, options.max_megapixels, options.max_decode_mb, draft_to)
    try:
        with _opened(source) as fh:
            pic = raw.decode(fh.read(), limits)
    except raw.RawError as exc:
        raise ImageError(name, exc.stage, exc.reason) from None
    except (FileNotFoundError, PermissionError, IsADirectoryError, files.NotRegularFileError) as e:
        raise ImageError(name, "read", _READ_ERRORS.get(type(e), e.strerror)) from None
    except OSError as exc:
        raise ImageError(name, "read", f"cannot read: {exc.strerror or exc}") from None
    fmt = Path(name).suffix.lstrip(".").upper()
    meta = ImageMeta(pic.width, pic.height, fmt, pic.taken_at, pic.camera, pic.pixels_from)
    return pic.image, meta


def decode_bytes(mode: str, size: tuple[int, int], transparency: bool = False) -> int:
    """Bytes a picture of this mode and size holds once decoded and converted to RGB.

    Pillow keeps 1-, L- and P-mode pixels in 1 byte, 16-bit greys in 2 and every other mode
    in 4; to_rgb adds RGB (4) and, for 16-bit/float greys, an 8-bit grey (1) on the way.
    """
    stored = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    if mode == "RGB":
        convert = 0
    elif mode in _WIDE_GREYS:
        convert = 1 + 4
    elif mode in ("P", "PA") and transparency:
        convert = 4 + 4  # through RGBA
    else:
        convert = 4
    return size[0] * size[1] * (stored + convert)


def _check_pixels(name: str, w: int, h: int, max_megapixels: float) -> None:
    mp = w * h / 1e6
    if mp > max_megapixels:
        raise ImageError(
            name,
            "decode",
            f"too many megapixels ({w}x{h} = {mp:.1f} MP > {max_megapixels:g} MP); "
            "raise it with --max-megapixels",
        )


def _check_memory(name: str, img: Image.Image, max_decode_mb: float) -> None:
    need = decode_bytes(img.mode, img.size, "transparency" in img.info) / (1 << 20)
    if need > max_decode_mb:
        w, h = img.size
        raise ImageError(
            name,
            "decode",
            f"needs {need:,.0f} MB of memory to decode ({w}x{h}, mode {img.mode}) > "
            f"{max_decode_mb:g} MB; raise it with --max-decode-mb or PHOTO_INDEX_MAX_DECODE_MB",
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB; 16-bit and float greys are scaled, not clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_GREYS:
        return _wide_grey_to_l(img).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def resize_geometry(w: int, h: int, size: int = IMAGE_SIZE) -> tuple[int, int, int, int]:
    """The contract's geometry for a w x h picture: (new_w, new_h, left, top), the resized size
    (shorter side `size`, long side truncated) and the centre crop's offsets in it."""
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    return new_w, new_h, int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))


def resize_crop(img: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """Shorter side to `size` (bicubic, long side truncated), then center crop `size`."""
    w, h = img.size
    new_w, new_h, left, top = resize_geometry(w, h, size)
    if max(new_w, new_h) > EXTREME_ASPECT * size:
        # A 20000x4 strip would become 1.1 M pixels wide: resample only the centre window.
        sx, sy = w / new_w, h / new_h
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return img.resize((size, size), Image.BICUBIC, box=box)
    img = img.resize((new_w, new_h), Image.BICUBIC)
    return img.crop((left, top, left + size, top + size))


def to_uint8(img: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """The contract up to the crop: an HWC uint8 array (cheap to move between processes)."""
    return np.array(resize_crop(to_rgb(img), size), dtype=np.uint8)


def _wide_grey_to_l(img: Image.Image) -> Image.Image:
    """16-bit, int or float grey scaled to 8 bits, a strip of rows at a time so the float64
    temporaries stay small (the same numbers as converting the whole picture at once)."""
    if img.mode.startswith("I;16"):
        top = 65535.0
    else:
        top = 65535.0 if max(0, img.getextrema()[1]) > 255 else 255.0
    w, h = img.size
    out = np.empty((h, w), dtype=np.uint8)
    for y in range(0, h, _STRIP_ROWS):
        strip = np.asarray(img.crop((0, y, w, min(h, y + _STRIP_ROWS))), dtype=np.float64)
        out[y : y + len(strip)] = np.clip(strip / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def normalize(batch: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] scaled to [0, 1] with CLIP mean/std."""
    x = batch.astype(np.float32) / 255.0
    x = (x - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def preprocess(img: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """The whole preprocessing contract for one opened image: float32 [3, size, size]."""
    return normalize(to_uint8(img, size))


def load_pixels(path: str | Path, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """Open a file and preprocess it (no draft): float32 [3, 224, 224]."""
    img, _ = open_image(path, options)
    return preprocess(img)


def preload() -> None:
    """Make what the first picture would otherwise pay for (the pHash's DCT basis), so that
    forked decode workers inherit it."""
    _dct_rows()


@functools.cache
def _dct_rows(n: int = 32, keep: int = 8) -> np.ndarray:
    """The first `keep` rows of the n-point DCT-II as scipy.fftpack.dct computes it (no
    normalization: 2 * sum x[i] cos(pi k (2i + 1) / 2n)), float64 [keep, n]."""
    k, i = np.arange(keep)[:, None], np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def perceptual_hash(img: Image.Image) -> int | None:
    """64-bit DCT perceptual hash (imagehash.phash's bits) as a signed int for SQLite, or None
    for a picture whose hash would carry no information (near-uniform: see hash_informative).

    Transparent pixels are composited over white first (PHASH_BACKGROUND): dropping alpha
    made different logos drawn in one colour hash alike. Opaque pictures hash as before. The
    low 8x8 frequencies of the 32x32 DCT are taken with numpy (no scipy).
    """
    grey = np.asarray(_hash_input(img), dtype=np.float64)
    if grey.std() < FLAT_STD:
        return None
    rows = _dct_rows()
    dct = rows @ grey @ rows.T  # the DCT over columns, then rows: [8, 8]
    value = 0
    for b in (dct > np.median(dct)).flatten():
        value = (value << 1) | int(b)
    value = value - (1 << 64) if value >= (1 << 63) else value
    return value if hash_informative(value) else None


def _hash_input(img: Image.Image) -> Image.Image:
    """The 32x32 grey picture the pHash is the DCT of: imagehash's steps (L, then Lanczos), with
    alpha composited over PHASH_BACKGROUND at 32x32 (Pillow resizes RGBA premultiplied)."""
    if not has_alpha(img):
        return to_rgb(img).convert("L").resize((32, 32), Image.LANCZOS)
    return over_background(img.convert("RGBA").resize((32, 32), Image.LANCZOS)).convert("L")


def over_background(rgba: Image.Image) -> Image.Image:
    """An RGBA picture composited over PHASH_BACKGROUND (white): how the pHash, and dedup's
    copy-or-edit comparison, see transparent pixels."""
    ground = Image.new("RGBA", rgba.size, (*PHASH_BACKGROUND, 255))
    return Image.alpha_composite(ground, rgba)


def has_alpha(img: Image.Image) -> bool:
    """Does the picture carry transparency (an alpha channel or a transparent colour)? Known
    from the header: Image.open has it before any pixel is decoded."""
    if img.mode in _WIDE_GREYS:
        return False
    return img.mode in _ALPHA_MODES or "transparency" in img.info


def hash_informative(value: int | None) -> bool:
    """False for no hash or one with fewer than MIN_HASH_BITS bits set (or unset): such hashes
    come from flat pictures (ties at the median) and sit within a few bits of each other."""
    if value is None:
        return False
    ones = bin(value & 0xFFFFFFFFFFFFFFFF).count("1")
    return MIN_HASH_BITS <= ones <= 64 - MIN_HASH_BITS


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes stored as signed ints."""
    return bin((a ^ b) & 0xFFFFFFFFFFFFFFFF).count("1")


def thumbnail(img: Image.Image, size: int = 256) -> Image.Image:
    """An RGB thumbnail that fits in `size` x `size` (the image is already EXIF-oriented)."""
    rgb = to_rgb(img)
    thumb = rgb.copy() if rgb is img else rgb  # a converted picture is ours to shrink
    thumb.thumbnail((size, size), Image.BICUBIC)
    return thumb


_ORIENTATION = 274


def _read_meta(img: Image.Image, fmt: str) -> ImageMeta:
    w, h = img.size
    meta = ImageMeta(width=w, height=h, format=fmt)
    try:
        exif = img.getexif()
    except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
        return meta
    meta.taken_at, meta.camera = exif_meta.taken_and_camera(exif)
    return meta
