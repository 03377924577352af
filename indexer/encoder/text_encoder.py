"""The text encoder API: `load_text_encoder(weights) -> TextEncoder` with `.encode_ids(ids)`.

Token ids in (the tokenizer is separate), L2-normalized projections out, in the image
tower's space when the weights are the same CLIP's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer.encoder import DTYPES, default_dtype, resolve_devices
from indexer.encoder.text_checkpoints import build_text_model, load_text_checkpoint, text_identity
from indexer.encoder.text_model import CLIPTextTower, TextConfig
from indexer.errors import DeviceError

__all__ = ["TextConfig", "TextEncoder", "load_text_encoder"]


class TextEncoder:
    """A loaded CLIP text tower on a device; stateless between calls."""

    def __init__(
        self,
        model: CLIPTextTower,
        device: torch.device,
        dtype: str,
        identity: dict,
        weights_path: Path | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        if dtype == "bf16":  # what autocast would cast them to on every call: same numbers
            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        self.device = device
        self.dtype = dtype
        self.identity = identity
        self.weights_path = weights_path  # the file read (a HF folder's weights file)
        self.dim = model.cfg.proj_dim
        self.context = model.cfg.context
        self.vocab = model.cfg.vocab

    def __repr__(self) -> str:
        return f"TextEncoder({self.identity['architecture']}, {self.device}, {self.dtype})"

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16")

    def _check_ids(self, ids: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(ids)
        if t.ndim != 2 or t.shape[1] != self.context:
            raise ValueError(f"token ids must be [N, {self.context}], got {list(t.shape)}")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"token ids must be integers, got {t.dtype}")
        t = t.long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.vocab):
            raise ValueError(f"token ids must lie in [0, {self.vocab}), got {int(t.max())}")
        return t

    @torch.inference_mode()
    def encode(self, ids: np.ndarray | torch.Tensor, batch_size: int = 256) -> dict:
        """int ids [N, context] → float32 numpy "projection" (L2-normalized), "pooled",
        "features" (the projection before normalization). Pooling is at argmax(ids)."""
        t = self._check_ids(ids)
        outs = []
        for start in range(0, t.shape[0], batch_size):
            with self._autocast():
                out = self.model(t[start : start + batch_size].to(self.device))
            outs.append({k: v.float().cpu().numpy() for k, v in out.items()})
        if not outs:
            width = self.model.cfg.width
            return {
                "projection": np.zeros((0, self.dim), np.float32),
                "pooled": np.zeros((0, width), np.float32),
                "features": np.zeros((0, self.dim), np.float32),
            }
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def encode_ids(self, ids: np.ndarray | torch.Tensor) -> np.ndarray:
        """int ids [N, context] → L2-normalized float32 projections [N, dim]."""
        return self.encode(ids)["projection"]


def load_text_encoder(
    weights: str | Path,
    device: str = "auto",
    dtype: str = "auto",
    *,
    sha256: str | None = None,
) -> TextEncoder:
    """Load the text tower of a CLIP checkpoint (file or HF folder) on one device.

    dtype "auto": as the image encoder (bf16 on CUDA and native-bf16 CPUs, else fp32).
    `sha256`: the file's, when already verified (else it is hashed for the identity).
    Raises CheckpointError (one line naming the file) for anything we cannot use.
    """
    dev = resolve_devices(device)[0]
    dtype = default_dtype(dev) if dtype in ("auto", "", None) else dtype
    if dtype not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}: use auto, fp32 or bf16")
    ckpt = load_text_checkpoint(weights)
    ident = text_identity(ckpt, sha256)
    return TextEncoder(build_text_model(ckpt), dev, dtype, ident, ckpt.file)
