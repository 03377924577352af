"""The image encoder API: `load_encoder(weights) -> Encoder` with `.embed(images)`.

One object owns the model, its device and dtype, and its identity (what the index pins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from indexer import imaging
from indexer.atomic import atomic_path
from indexer.encoder.checkpoints import CheckpointError, build_model, identity, load_checkpoint
from indexer.encoder.keymap import to_open_clip
from indexer.encoder.model import CLIPVisionTower, ViTConfig
from indexer.encoder.weights import IMAGE as DEFAULT_WEIGHTS
from indexer.encoder.weights import WeightsError, default_weights
from indexer.errors import DeviceError

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
DTYPES = ("fp32", "bf16")


def cpu_has_bf16() -> bool:
    """Native bf16 matmul on this CPU (AVX512-BF16 or AMX)? Without it bf16 is slower."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_dtype(device: torch.device) -> str:
    """bf16 autocast on CUDA; on CPU bf16 only where it is native (faster than fp32 at full
    ViT-L/14 size on an avx512_bf16 CPU: docs/encoder.md, "Device and dtype")."""
    if device.type == "cuda" or cpu_has_bf16():
        return "bf16"
    return "fp32"


def resolve_devices(device: str | None = "auto") -> list[torch.device]:
    """Every device a spec names: auto/cuda → each visible GPU (else CPU for auto), cuda:N,
    cpu, or a comma list such as "cuda:0,cuda:2". Unknown or missing ones are DeviceErrors."""
    spec = (device or "auto").strip()
    if spec in ("auto", "cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count:
            return [torch.device("cuda", i) for i in range(count)]
        if spec == "cuda":
            raise DeviceError("device 'cuda' asked for, but no CUDA GPU is available")
        return [torch.device("cpu")]
    return [_one_device(part.strip()) for part in spec.split(",") if part.strip()] or [
        torch.device("cpu")
    ]


def _one_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} asked for, but no CUDA GPU is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise DeviceError(f"device {device!r} does not exist: {count} CUDA GPU(s) here")
    return dev


@dataclass
class Embeddings:
    """Encoder outputs for N images, row i for input i; `save` writes the `index embed` .npz."""

    projection: np.ndarray  # [N, dim] float32, L2-normalized
    embedding: np.ndarray  # [N, width] class token after the final LayerNorm
    features: np.ndarray | None = None  # [N, width, grid, grid] patch tokens before the norm
    paths: list[str] = field(default_factory=list)  # input i's path ("<image i>" for PIL)

    def arrays(self) -> dict[str, np.ndarray]:
        """The .npz contract: paths, projection, embedding and, when computed, features."""
        out = {
            "paths": np.asarray(self.paths, dtype=str),
            "projection": self.projection,
            "embedding": self.embedding,
        }
        if self.features is not None:
            out["features"] = self.features
        return out

    def save(self, path: str | Path) -> Path:
        """Write `arrays()` as an uncompressed .npz, atomically (np.load(path) reads it back)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # numpy adds no second ".npz"
            np.savez(fh, **self.arrays())
        return path


class Encoder:
    """A loaded CLIP image tower on a device; thread-compatible, stateless between calls."""

    def __init__(
        self,
        model: CLIPVisionTower,
        device: torch.device,
        dtype: str,
        identity: dict,
        weights_path: Path | None = None,
        compile: bool = False,
    ) -> None:
        self.model = model.to(device).eval()
        if dtype == "bf16":  # what autocast would cast them to on every call: same numbers
            for module in self.model.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    module.to(torch.bfloat16)
        self.weights_path = weights_path  # what to pass to load_encoder in another process
        self.device = device
        self.dtype = dtype
        self.identity = identity
        self.dim = model.cfg.proj_dim
        self.width = model.cfg.width
        self.image_size = model.cfg.image_size
        self.replicas: list[Encoder] = [self]  # one per device; build() spreads batches over them
        # torch.compile: fused kernels for a fixed batch shape (smaller batches are padded)
        self._forward = torch.compile(model, dynamic=False) if compile else model
        self._compiled_batch = 0 if not compile else -1

    def __repr__(self) -> str:
        return f"Encoder({self.identity['architecture']}, {self.device}, {self.dtype})"

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16")

    def _to_device(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(x)
        if self.device.type == "cuda" and t.device.type == "cpu" and not t.is_pinned():
            t = t.pin_memory()  # non_blocking only overlaps from page-locked memory
        return t.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def encode_pixels(
        self, pixels: np.ndarray | torch.Tensor, features: bool = True
    ) -> dict[str, np.ndarray]:
        """Normalized float [B, 3, H, W] → float32 numpy projection, embedding (, features).

        The exact-reference path (`index embed`); the index itself goes through encode_uint8.
        """
        x = self._to_device(pixels).float()
        with self._autocast():
            out = self.model(x, features=features)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    @torch.inference_mode()
    def encode_uint8(self, crops: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 [B, H, W, 3] crops → L2-normalized float32 projections [B, dim].

        The indexing hot path: 1 byte per channel crosses to the device, normalized there.
        """
        x = self._to_device(crops)
        if x.dtype != torch.uint8:
            raise ValueError(f"encode_uint8 takes uint8 crops, got {x.dtype}")
        n = x.shape[0]
        if self._compiled_batch < 0:
            self._compiled_batch = n  # the first batch fixes the compiled shape
        if 0 < n < self._compiled_batch:  # pad, so the last batch needs no recompilation
            x = torch.cat([x, x.new_zeros((self._compiled_batch - n, *x.shape[1:]))])
        with self._autocast():
            out = self._forward(x)
        return out["projection"][:n].float().cpu().numpy()

    def warm_up(self, batch_size: int) -> None:
        """Compile now, for `batch_size`, when torch.compile is on (a no-op otherwise): replicas
        are compiled one after the other rather than from several threads at once."""
        if self._compiled_batch < 0:
            self.encode_uint8(
                torch.zeros((batch_size, self.image_size, self.image_size, 3), dtype=torch.uint8)
            )

    def embed(
        self,
        images: Sequence[str | Path | Image.Image],
        features: bool = False,
        batch_size: int = 32,
        options: imaging.DecodeOptions = imaging.DecodeOptions(),
    ) -> Embeddings:
        """Encode paths or PIL images with the exact preprocessing contract (no JPEG draft).

        Paths are decoded within `options`' limits (pass `DecodeOptions.from_settings`); an
        unreadable path raises imaging.ImageError (the caller decides whether to skip it).
        """
        outs: list[dict] = []
        for start in range(0, len(images), batch_size):
            chunk = []
            for item in images[start : start + batch_size]:
                img = (
                    item
                    if isinstance(item, Image.Image)
                    else imaging.open_image(item, replace(options, draft=False))[0]
                )
                chunk.append(imaging.preprocess(img, self.image_size))
            outs.append(self.encode_pixels(np.stack(chunk), features=features))
        paths = [
            f"<image {i}>" if isinstance(item, Image.Image) else str(item)
            for i, item in enumerate(images)
        ]
        if not outs:
            empty = Embeddings(
                np.zeros((0, self.dim), np.float32), np.zeros((0, self.width), np.float32)
            )
            if features:
                g = self.model.cfg.grid
                empty.features = np.zeros((0, self.width, g, g), np.float32)
            return empty
        cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        return Embeddings(cat["projection"], cat["embedding"], cat.get("features"), paths)


def load_encoder(
    weights: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | Path | None = None,
    *,
    replicate: bool = False,
    compile: bool = False,
) -> Encoder:
    """Load any supported checkpoint (None = the verified default ViT-L/14 download) on a device.

    dtype "auto": bf16 autocast on CUDA and on CPUs with native bf16, else fp32.
    `replicate`: one replica on every device the spec names (`.replicas`; auto = every GPU),
    else the first device only. `compile`: torch.compile the forward pass (pays on GPUs).
    """
    devices = resolve_devices(device)
    if not replicate:
        devices = devices[:1]
    dtype = default_dtype(devices[0]) if dtype in ("auto", "", None) else dtype
    if dtype not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}: use auto, fp32 or bf16")
    if weights:
        path, known_sha = Path(weights).expanduser(), None
    else:
        path, known_sha = default_weights(cache_dir), DEFAULT_WEIGHTS.sha256  # verified once
    ckpt = load_checkpoint(path)
    ident = identity(ckpt, known_sha)
    ident["preprocess"] = imaging.PREPROCESS_VERSION
    first = Encoder(build_model(ckpt), devices[0], dtype, ident, path, compile=compile)
    for dev in devices[1:]:
        first.replicas.append(Encoder(build_model(ckpt), dev, dtype, ident, path, compile=compile))
    return first


def save_random_checkpoint(path: str | Path, cfg: ViTConfig | None = None, seed: int = 0) -> Path:
    """Write random weights (default: full ViT-L/14) in open_clip layout, for benches.

    The real weights cannot be downloaded everywhere; speed does not depend on their values.
    """
    from safetensors.torch import save_file

    cfg = cfg or ViTConfig()
    if cfg.proj_bias:
        raise ValueError("the open_clip layout has no projection bias")
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = CLIPVisionTower(cfg)  # shapes only
    s = {}
    for name, p in model.state_dict().items():
        if "norm" in name and name.endswith("weight"):
            s[name] = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
        else:
            s[name] = 0.02 * torch.randn(p.shape, generator=gen)
    out = to_open_clip(s, cfg.layers)
    path = Path(path)
    save_file({k: v.contiguous() for k, v in out.items()}, str(path))
    return path
