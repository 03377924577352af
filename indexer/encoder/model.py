"""The CLIP vision transformer (OpenAI ViT, QuickGELU, pre-norm) in plain torch.

Sizes come from the checkpoint; outputs are the projection, the class-token embedding and
the patch-token feature map, exactly as Birder's `vit_l14_pn_quick_gelu` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from indexer.imaging import CLIP_MEAN, CLIP_STD

ACTIVATIONS = ("quick_gelu", "gelu")


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a CLIP image tower (defaults: OpenAI ViT-L/14 at 224 px).

    Everything the checkpoint loader reads from shapes and configs lands here.
    """

    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp: int = 4096
    patch: int = 14
    image_size: int = 224
    proj_dim: int = 768
    proj_bias: bool = False
    eps: float = 1e-5
    act: str = "quick_gelu"

    @property
    def grid(self) -> int:
        """Patches per side (16 for ViT-L/14 at 224)."""
        return self.image_size // self.patch

    @property
    def architecture(self) -> str:
        """The string the index pins, e.g. 'clip-vit w1024 l24 h16 m4096 p14 i224 proj768'."""
        extra = (" bias" if self.proj_bias else "") + ("" if self.act == "quick_gelu" else " gelu")
        return (
            f"clip-vit w{self.width} l{self.layers} h{self.heads} m{self.mlp} p{self.patch} "
            f"i{self.image_size} proj{self.proj_dim}{extra}"
        )


class QuickGELU(nn.Module):
    """OpenAI's GELU approximation x * sigmoid(1.702 x); the weights were trained with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with one fused QKV Linear (Birder/open_clip layout)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.attn = Attention(cfg.width, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.fc1 = nn.Linear(cfg.width, cfg.mlp)
        self.act = QuickGELU() if cfg.act == "quick_gelu" else nn.GELU()
        self.fc2 = nn.Linear(cfg.mlp, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class CLIPVisionTower(nn.Module):
    """Patch conv → [CLS]+pos → pre-LN → blocks → LN(CLS) → projection.

    Takes normalized float NCHW pixels or uint8 NHWC crops (normalized here, on the device,
    so the pipeline ships 4x fewer bytes than float).
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if cfg.width % cfg.heads or cfg.act not in ACTIVATIONS:
            raise ValueError(f"bad ViT config: {cfg}")
        self.cfg = cfg
        self.conv = nn.Conv2d(3, cfg.width, cfg.patch, stride=cfg.patch, bias=False)
        self.class_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embedding = nn.Parameter(torch.zeros(1, cfg.grid**2 + 1, cfg.width))
        self.pre_norm = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.proj = nn.Linear(cfg.width, cfg.proj_dim, bias=cfg.proj_bias)
        self.register_buffer("mean", torch.empty(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", torch.empty(1, 3, 1, 1), persistent=False)
        if self.conv.weight.device.type != "meta":
            self.reset_normalization()

    def reset_normalization(self) -> None:
        """(Re)make the uint8 mean/std buffers on the weights' device (after a meta build)."""
        device = self.conv.weight.device
        self.mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1) * 255.0)

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """All tokens after the last block, before the final norm: [B, 1 + grid², width]."""
        x = self.conv(pixels).flatten(2).transpose(1, 2)
        cls = self.class_token.expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding.to(x.dtype)
        x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, pixels: torch.Tensor, features: bool = False) -> dict[str, torch.Tensor]:
        """{"projection" (L2-normalized fp32), "embedding", and "features" [B, width, g, g]}.

        `pixels`: uint8 [B, H, W, 3] crops or normalized float [B, 3, H, W].
        """
        if pixels.dtype == torch.uint8:
            pixels = self.normalize_uint8(pixels)
        x = self.tokens(pixels)
        embedding = self.norm(x[:, 0])
        projection = F.normalize(self.proj(embedding).float(), dim=-1)
        out = {"projection": projection, "embedding": embedding}
        if features:
            b, g = x.shape[0], self.cfg.grid
            out["features"] = x[:, 1:].transpose(1, 2).reshape(b, self.cfg.width, g, g)
        return out

    def normalize_uint8(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] → normalized float32 [B, 3, H, W] on the crops' device."""
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"uint8 input must be [B, H, W, 3], got {list(crops.shape)}")
        x = crops.permute(0, 3, 1, 2).float()
        return (x - self.mean) * self.inv_std
