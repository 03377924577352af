"""The image encoder API: `load_encoder(weights) -> Encoder` with `.embed(images)`.

One object owns the model, its device and dtype, and its identity (what the index pins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from indexer import imaging
from indexer.encoder.checkpoints import CheckpointError, convert, sha256_file, to_open_clip
from indexer.encoder.model import CLIPVisionTower, ViTConfig
from indexer.encoder.weights import WeightsError, default_weights

__all__ = [
    "CheckpointError",
    "DeviceError",
    "Embeddings",
    "Encoder",
    "ViTConfig",
    "WeightsError",
    "load_encoder",
    "save_random_checkpoint",
]


def cpu_has_bf16() -> bool:
    """Native bf16 matmul on this CPU (AVX512-BF16 or AMX)? Else bf16 would be slower."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_dtype(device: torch.device) -> str:
    """bf16 on CUDA; on CPU bf16 where it is native (bench/encoder.py: 2.7x faster than fp32
    at cosine 0.9999 on a 2-core avx512_bf16 machine), else fp32."""
    if device.type == "cuda" or cpu_has_bf16():
        return "bf16"
    return "fp32"


@dataclass
class Embeddings:
    """Encoder outputs for N images, row i for input i."""

    projection: np.ndarray  # [N, dim] float32, L2-normalized
    embedding: np.ndarray  # [N, width] class token after the final LayerNorm
    features: np.ndarray | None = None  # [N, width, grid, grid] patch tokens before the norm


class DeviceError(ValueError):
    """An unknown or unavailable --device / --dtype."""


def resolve_device(device: str = "auto") -> torch.device:
    """auto → CUDA when present, else CPU; explicit cuda without a GPU is an error."""
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} asked for, but no CUDA GPU is available")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return dev


class Encoder:
    """A loaded CLIP image tower on a device; thread-compatible, stateless between calls."""

    def __init__(
        self,
        model: CLIPVisionTower,
        device: torch.device,
        dtype: str,
        identity: dict,
        weights_path: Path | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.weights_path = weights_path
        self.device = device
        self.dtype = dtype
        self.identity = identity
        self.dim = model.cfg.proj_dim
        self.width = model.cfg.width
        self.image_size = model.cfg.image_size

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16")

    @torch.inference_mode()
    def encode_pixels(self, pixels: np.ndarray | torch.Tensor, features: bool = False) -> dict:
        """Normalized float [B, 3, H, W] → numpy {"projection", "embedding"(, "features")}."""
        x = torch.as_tensor(pixels).to(self.device, torch.float32, non_blocking=True)
        with self._autocast():
            out = self.model(x, features=features)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    @torch.inference_mode()
    def encode_uint8(self, crops: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 [B, H, W, 3] crops → L2-normalized projections [B, dim] (the indexing path)."""
        x = torch.as_tensor(crops).to(self.device, non_blocking=True)
        with self._autocast():
            out = self.model(self.model.normalize_uint8(x))
        return out["projection"].float().cpu().numpy()

    def embed(
        self,
        images: Sequence[str | Path | Image.Image],
        features: bool = False,
        batch_size: int = 32,
    ) -> Embeddings:
        """Encode paths or PIL images (the exact preprocessing contract, no draft)."""
        outs: list[dict] = []
        for start in range(0, len(images), batch_size):
            chunk = []
            for item in images[start : start + batch_size]:
                img = item if isinstance(item, Image.Image) else imaging.open_image(item)[0]
                chunk.append(imaging.preprocess(img, self.image_size))
            outs.append(self.encode_pixels(np.stack(chunk), features=features))
        if not outs:
            return Embeddings(
                np.zeros((0, self.dim), np.float32), np.zeros((0, self.width), np.float32)
            )
        cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        return Embeddings(cat["projection"], cat["embedding"], cat.get("features"))


def load_encoder(
    weights: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | Path | None = None,
) -> Encoder:
    """Load weights (any supported layout; None = the default ViT-L/14 download) on a device.

    dtype "auto" is bf16 autocast on CUDA and on CPUs with native bf16, else fp32.
    """
    path = Path(weights).expanduser() if weights else default_weights(cache_dir)
    cfg, state, layout, weights_file = convert(path)
    model = CLIPVisionTower(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        raise CheckpointError(
            weights_file, f"weights do not fit a CLIP ViT: {detail[-1].strip()}"
        ) from None
    dev = resolve_device(device)
    if dtype == "auto":
        dtype = default_dtype(dev)
    if dtype not in ("fp32", "bf16"):
        raise DeviceError(f"unknown dtype {dtype!r}: use auto, fp32 or bf16")
    identity = {
        "weights_sha256": sha256_file(weights_file),
        "architecture": cfg.architecture,
        "layout": layout,
        "preprocess": imaging.PREPROCESS_VERSION,
        "dim": cfg.proj_dim,
    }
    return Encoder(model, dev, dtype, identity, Path(path))


def save_random_checkpoint(path: str | Path, cfg: ViTConfig | None = None, seed: int = 0) -> Path:
    """Write random full-size (default ViT-L/14) weights in open_clip layout, for benches."""
    from safetensors.torch import save_file

    cfg = cfg or ViTConfig()
    torch.manual_seed(seed)
    model = CLIPVisionTower(cfg)
    for name, p in model.named_parameters():  # LayerNorm scales 1, everything else N(0, 0.02)
        if "norm" in name and name.endswith("weight"):
            torch.nn.init.ones_(p)
        else:
            torch.nn.init.normal_(p, std=0.02)
    out = to_open_clip(model.state_dict(), cfg.layers)
    path = Path(path)
    save_file(out, str(path))
    return path
