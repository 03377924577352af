"""The CLIP text transformer (OpenAI CLIP, QuickGELU, causal pre-norm) in plain torch.

Sizes come from the checkpoint; the output is the `ln_final` token at the end-of-text position
(argmax of the ids) times the text projection, as open_clip's `encode_text` computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from indexer.encoder.model import ACTIVATIONS, Attention, Block


@dataclass(frozen=True)
class TextConfig:
    """Shape of a CLIP text tower (defaults: OpenAI CLIP ViT-L/14's text side)."""

    vocab: int = 49408
    context: int = 77
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp: int = 3072
    proj_dim: int = 768
    eps: float = 1e-5
    act: str = "quick_gelu"

    @property
    def architecture(self) -> str:
        """The string an index may pin, e.g. 'clip-text w768 l12 h12 m3072 c77 v49408 proj768'."""
        extra = "" if self.act == "quick_gelu" else " gelu"
        return (
            f"clip-text w{self.width} l{self.layers} h{self.heads} m{self.mlp} c{self.context} "
            f"v{self.vocab} proj{self.proj_dim}{extra}"
        )


class CausalAttention(Attention):
    """The image tower's fused-QKV attention, where position i sees only positions <= i."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TextBlock(Block):
    """The image tower's pre-norm block with causal attention."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__(cfg)  # type: ignore[arg-type] - reads width, heads, mlp, eps, act
        self.attn = CausalAttention(cfg.width, cfg.heads)


class CLIPTextTower(nn.Module):
    """Token + positional embedding → causal blocks → ln_final → token at EOT → projection."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        if cfg.width % cfg.heads or cfg.act not in ACTIVATIONS:
            raise ValueError(f"bad text config: {cfg}")
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.width)
        self.pos_embedding = nn.Parameter(torch.zeros(cfg.context, cfg.width))
        self.blocks = nn.ModuleList(TextBlock(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.proj = nn.Linear(cfg.width, cfg.proj_dim, bias=False)

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """The residual stream after the last block, before ln_final: [B, context, width]."""
        x = self.token_embedding(ids) + self.pos_embedding[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """int64 ids [B, context] → {"projection" (L2-normalized fp32), "pooled", "features"}.

        "pooled" is ln_final at the first end-of-text token (the largest id, 49407);
        "features" is the projection before normalization. The attention is causal, so the
        positions after the last end-of-text token change nothing pooled: they are not run
        (a 5-word query costs a tenth of the 77 positions).
        """
        eot = ids.argmax(dim=-1)
        x = self.tokens(ids[:, : int(eot.max()) + 1] if ids.numel() else ids)
        rows = torch.arange(ids.shape[0], device=ids.device)
        pooled = self.norm(x[rows, eot])
        features = self.proj(pooled).float()
        return {
            "projection": F.normalize(features, dim=-1),
            "pooled": pooled,
            "features": features,
        }
