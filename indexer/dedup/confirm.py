"""Copies or edits: do two pictures the hash tiers linked hold the same pixels?

A *copy* is the same picture stored again: byte-identical, or the same pixels after orientation
and resampling to the smaller size, within JPEG-level error (re-saves down to quality 30, a
half- or quarter-size copy, a format change). An *edit* is the same picture changed on purpose:
cropped, brightened, recoloured, B&W, retouched, another view. Two flat-ish pictures (text
screenshots, UI captures: most pixels one colour) that are neither are *distinct*: a pHash
cannot tell one page of text from another. Tolerances and their measurements: docs/dedup.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

COPY, EDIT, DISTINCT = "copy", "edit", "distinct"
ASPECT = 0.01  # shapes more than 1 % apart in aspect ratio are not the same pixels
COARSE = 64  # the whole picture is compared at ≤ 64 px (Gaussian blur 1 px): tone, layout
COARSE_BLUR, FINE_BLUR = 1.0, 0.7
MAX_BIAS = 2.0  # grey levels a channel's mean may move (a 5 % brightness edit moves ≥ 3.9)
MAX_RESIDUAL = 2.5  # mean |difference| once the bias is removed (copies ≤ 2.4, edits ≥ 2.8)
MAX_P99 = 20.0  # 99th percentile of the residual (a retouched corner reaches ≥ 80)
FLAT = 0.3  # share of pixels at one grey level from which a picture is "flat-ish" (text)
FINE_RESIDUAL, FINE_P99 = 3.0, 20.0  # flat-ish pictures: also at ≤ 256 px, blur 0.7 px
EDIT_CORRELATION = 0.97  # flat-ish: an edit keeps the grey layout (other text: ≈ 0.90)


@dataclass(frozen=True)
class Comparison:
    """The verdict and the figures it rests on (grey levels, 0–255)."""

    relation: str  # COPY | EDIT | DISTINCT
    bias: float = 0.0
    residual: float = 0.0
    p99: float = 0.0
    flat: bool = False
    fine_residual: float | None = None
    fine_p99: float | None = None
    correlation: float | None = None


class Pixels:
    """A thumb and its resampled, blurred versions, each made once (a picture is compared with
    every unit of its star, mostly at one size)."""

    def __init__(self, thumb: np.ndarray) -> None:
        self.thumb = thumb
        self._at: dict[tuple[tuple[int, int], float], np.ndarray] = {}

    @property
    def size(self) -> tuple[int, int]:
        return self.thumb.shape[1], self.thumb.shape[0]

    def at(self, size: tuple[int, int], blur: float) -> np.ndarray:
        """The thumb at `size` (Lanczos), Gaussian-blurred by `blur` px, as float32."""
        key = (size, blur)
        if key not in self._at:
            img = Image.fromarray(self.thumb)
            if img.size != size:
                img = img.resize(size, Image.LANCZOS)
            self._at[key] = np.asarray(img.filter(ImageFilter.GaussianBlur(blur)), np.float32)
        return self._at[key]


def _fit(size: tuple[int, int], cap: int) -> tuple[int, int]:
    scale = min(1.0, cap / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _differences(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(largest channel bias, mean residual, 99th percentile residual) of x − y."""
    d = x - y
    bias = d.mean(axis=(0, 1))
    residual = np.abs(d - bias)
    p99 = float(np.percentile(residual.max(axis=2), 99))
    return float(np.abs(bias).max()), float(residual.mean()), p99


def _same_shape(a: tuple[int, int], b: tuple[int, int]) -> bool:
    ra, rb = a[0] / max(1, a[1]), b[0] / max(1, b[1])
    return abs(ra - rb) <= ASPECT * max(ra, rb)


def compare(
    a: Pixels | np.ndarray,
    b: Pixels | np.ndarray,
    shape_a: tuple[int, int],
    shape_b: tuple[int, int],
    flat: float = 0.0,
) -> Comparison:
    """COPY, EDIT or DISTINCT for two thumbs (evidence.Look.thumb, or `Pixels` of them) of
    pictures of displayed sizes `shape_a`/`shape_b` (width, height); `flat`: the larger
    `Look.flat` of the two."""
    a = a if isinstance(a, Pixels) else Pixels(a)
    b = b if isinstance(b, Pixels) else Pixels(b)
    flatish = flat >= FLAT
    if not _same_shape(shape_a, shape_b):
        return Comparison(DISTINCT if flatish else EDIT, flat=flatish)
    fine = min(a.size, b.size, key=lambda s: s[0] * s[1])
    coarse = _fit(fine, COARSE)
    bias, residual, p99 = _differences(a.at(coarse, COARSE_BLUR), b.at(coarse, COARSE_BLUR))
    agree = bias <= MAX_BIAS and residual <= MAX_RESIDUAL and p99 <= MAX_P99
    if not flatish:
        return Comparison(COPY if agree else EDIT, bias, residual, p99)
    x, y = a.at(fine, FINE_BLUR), b.at(fine, FINE_BLUR)
    _, fine_residual, fine_p99 = _differences(x, y)
    if agree and fine_residual <= FINE_RESIDUAL and fine_p99 <= FINE_P99:
        return Comparison(COPY, bias, residual, p99, True, fine_residual, fine_p99)
    gx, gy = x.mean(axis=2).ravel(), y.mean(axis=2).ravel()
    both = float(gx.std() * gy.std())
    corr = float(np.mean((gx - gx.mean()) * (gy - gy.mean())) / both) if both > 0 else 0.0
    verdict = EDIT if corr >= EDIT_CORRELATION else DISTINCT
    return Comparison(verdict, bias, residual, p99, True, fine_residual, fine_p99, corr)
