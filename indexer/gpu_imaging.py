"""The preprocessing contract as batched torch ops, on any device (CUDA on a GPU box, CPU in tests).

From decoded uint8 RGB pictures of any sizes to the encoder's uint8 [B, 224, 224, 3] crops
(`Encoder.encode_uint8` normalizes them with CLIP mean/std on the device), with the geometry of
`imaging.resize_crop`. PIL's bicubic reduce is two separable passes (horizontal, then vertical),
each rounded to 8 bits; doing the same with `interpolate(mode="bicubic", antialias=True)` (PIL's
a = -0.5 kernel, widened when shrinking) keeps every pixel within 2 levels of PIL's
(docs/gpu.md, "Agreement"). Opt-in: nothing in today's builds calls it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from indexer.imaging import EXTREME_ASPECT, IMAGE_SIZE, resize_geometry

# What a build would pin for pictures preprocessed here (builds do not record it yet).
PREPROCESS_VERSION = "clip-224-bicubic-torch-v1"
CHUNK_BYTES = 512 << 20  # float32 input converted at once per size group (a 12 MP photo: 144 MB)


def fits(width: int, height: int, size: int = IMAGE_SIZE) -> bool:
    """Can this path preprocess a width x height picture? Not beyond the contract's extreme
    aspect ratio, where the CPU path resamples only the centre window (`imaging.resize_crop`)."""
    new_w, new_h, _, _ = resize_geometry(width, height, size)
    return width > 0 and height > 0 and max(new_w, new_h) <= EXTREME_ASPECT * size


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """An HWC picture turned upright for its EXIF orientation (1-8), as ImageOps.exif_transpose
    does; other values leave it as it is."""
    if orientation in (2, 4, 5, 7):  # mirrored: flip left-right first
        image = image.flip(1)
    turns = {3: 2, 4: 2, 5: 1, 6: 3, 7: 3, 8: 1}.get(orientation, 0)  # quarter turns, anticlockwise
    return torch.rot90(image, turns, dims=(0, 1)) if turns else image


def resize_crop_batch(
    images: Sequence[torch.Tensor], size: int = IMAGE_SIZE, *, layout: str = "HWC"
) -> torch.Tensor:
    """uint8 RGB pictures (upright, on one device; `layout` "HWC" or "CHW") → uint8
    [B, size, size, 3] crops on that device, row i for picture i.

    Pictures of one size are resized together, a chunk of at most CHUNK_BYTES of float32 at a
    time. A picture that does not `fits` raises ValueError: route it to the CPU path first.
    """
    if layout not in ("HWC", "CHW"):
        raise ValueError(f"layout must be HWC or CHW, got {layout!r}")
    chw = [img.permute(2, 0, 1) if layout == "HWC" else img for img in images]
    for img in chw:
        if img.ndim != 3 or img.shape[0] != 3 or img.dtype != torch.uint8:
            raise ValueError(f"want uint8 RGB pictures, got {img.dtype} {list(img.shape)}")
        if not fits(img.shape[2], img.shape[1], size):
            raise ValueError(f"{img.shape[2]}x{img.shape[1]} is beyond the GPU path's aspect ratio")
    if not chw:
        return torch.empty((0, size, size, 3), dtype=torch.uint8)
    out = torch.empty((len(chw), 3, size, size), dtype=torch.uint8, device=chw[0].device)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(chw):
        groups.setdefault(tuple(img.shape), []).append(i)
    for shape, rows in groups.items():
        step = max(1, CHUNK_BYTES // (4 * shape[0] * shape[1] * shape[2]))
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            out[part] = _resize_crop(torch.stack([chw[i] for i in part]), size)
    return out.permute(0, 2, 3, 1).contiguous()


def _resize_crop(batch: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, h, w] of one size → uint8 [N, 3, size, size]: PIL's passes and crop."""
    h, w = batch.shape[-2:]
    new_w, new_h, left, top = resize_geometry(w, h, size)
    x = batch.float()
    if new_w != w:  # horizontal pass, then only the crop's columns go on
        x = _bicubic(x, (h, new_w))
    x = x[..., left : left + size]
    if new_h != h:
        x = _bicubic(x, (new_h, size))
    return x[..., top : top + size, :].to(torch.uint8)


def _bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One pass of PIL's reduce: antialiased bicubic, rounded and clipped to 8 bits."""
    y = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255)
