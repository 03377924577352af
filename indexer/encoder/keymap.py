"""One key map per checkpoint layout: which source tensors make each of our model's tensors.

Reading a checkpoint applies a layout's `Plan`; `to_open_clip` runs the open_clip plan backwards
(benches write random weights in that layout), so the mapping is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensors = dict[str, torch.Tensor]
# our key -> (source keys, how to combine them into our tensor; None = take the only one)
Plan = dict[str, tuple[tuple[str, ...], Callable[..., torch.Tensor] | None]]
# (source, ours) module names inside one block, for the open_clip and HF layouts
_OC_BLOCK = "ln_1:norm1 attn.out_proj:attn.proj ln_2:norm2 mlp.c_fc:fc1 mlp.c_proj:fc2"
_HF_BLOCK = (
    "layer_norm1:norm1 self_attn.out_proj:attn.proj layer_norm2:norm2 mlp.fc1:fc1 mlp.fc2:fc2"
)


def open_clip_blocks(n: int, prefix: str) -> Plan:
    """Our `blocks.N.*` from open_clip's `{prefix}N.*` residual blocks (either tower)."""
    plan: Plan = {}
    for i in range(n):
        b, o = f"{prefix}{i}.", f"blocks.{i}."
        plan[o + "attn.qkv.weight"] = ((b + "attn.in_proj_weight",), None)
        plan[o + "attn.qkv.bias"] = ((b + "attn.in_proj_bias",), None)
        for src, dst in (pair.split(":") for pair in _OC_BLOCK.split()):
            for p in ("weight", "bias"):
                plan[f"{o}{dst}.{p}"] = ((f"{b}{src}.{p}",), None)
    return plan


def hf_blocks(n: int, prefix: str) -> Plan:
    """Our `blocks.N.*` from Hugging Face's `{prefix}N.*` encoder layers (q, k, v fused)."""
    plan: Plan = {}
    for i in range(n):
        b, o = f"{prefix}{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            qkv = tuple(f"{b}self_attn.{x}_proj.{p}" for x in ("q", "k", "v"))
            plan[f"{o}attn.qkv.{p}"] = (qkv, lambda q, k, v: torch.cat([q, k, v]))
        for src, dst in (pair.split(":") for pair in _HF_BLOCK.split()):
            for p in ("weight", "bias"):
                plan[f"{o}{dst}.{p}"] = ((f"{b}{src}.{p}",), None)
    return plan


def _birder(n: int, t: dict) -> Plan:
    plan: Plan = {
        "conv.weight": (("conv_proj.weight",), None),
        "class_token": (("class_token",), None),
        "pos_embedding": (("pos_embedding",), None),
        "pre_norm.weight": (("encoder.pre_block.0.weight",), None),
        "pre_norm.bias": (("encoder.pre_block.0.bias",), None),
        "norm.weight": (("norm.weight",), None),
        "norm.bias": (("norm.bias",), None),
        "proj.weight": (("classifier.weight",), None),
    }
    if "classifier.bias" in t:
        plan["proj.bias"] = (("classifier.bias",), None)
    names = {"norm1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj"}
    names.update({"norm2": "norm2", "mlp.0": "fc1", "mlp.3": "fc2"})
    for i in range(n):
        for src, dst in names.items():
            for p in ("weight", "bias"):
                plan[f"blocks.{i}.{dst}.{p}"] = ((f"encoder.block.{i}.{src}.{p}",), None)
    return plan


def _open_clip(n: int, t: dict) -> Plan:
    v = "visual."
    plan: Plan = {
        "conv.weight": ((v + "conv1.weight",), None),
        "class_token": ((v + "class_embedding",), lambda x: x.reshape(1, 1, -1)),
        "pos_embedding": ((v + "positional_embedding",), lambda x: x.unsqueeze(0)),
        "pre_norm.weight": ((v + "ln_pre.weight",), None),
        "pre_norm.bias": ((v + "ln_pre.bias",), None),
        "norm.weight": ((v + "ln_post.weight",), None),
        "norm.bias": ((v + "ln_post.bias",), None),
        "proj.weight": ((v + "proj",), lambda x: x.t().contiguous()),  # [width, proj]
    }
    return {**plan, **open_clip_blocks(n, v + "transformer.resblocks.")}


def _hf(n: int, t: dict) -> Plan:
    v = "vision_model."
    plan: Plan = {
        "conv.weight": ((v + "embeddings.patch_embedding.weight",), None),
        "class_token": ((v + "embeddings.class_embedding",), lambda x: x.reshape(1, 1, -1)),
        "pos_embedding": ((v + "embeddings.position_embedding.weight",), lambda x: x[None]),
        "pre_norm.weight": ((v + "pre_layrnorm.weight",), None),  # [sic]
        "pre_norm.bias": ((v + "pre_layrnorm.bias",), None),
        "norm.weight": ((v + "post_layernorm.weight",), None),
        "norm.bias": ((v + "post_layernorm.bias",), None),
        "proj.weight": (("visual_projection.weight",), None),
    }
    return {**plan, **hf_blocks(n, v + "encoder.layers.")}


@dataclass(frozen=True)
class _Layout:
    plan: Callable[[int, dict], Plan]
    blocks: str  # regex whose group 1 is the block index
    owns: Callable[[str], bool]  # keys that belong to the image tower (others are ignored)


LAYOUTS = {
    "birder": _Layout(_birder, r"encoder\.block\.(\d+)\.", lambda k: True),
    "open_clip": _Layout(
        _open_clip, r"visual\.transformer\.resblocks\.(\d+)\.", lambda k: k.startswith("visual.")
    ),
    "hf": _Layout(
        _hf,
        r"vision_model\.encoder\.layers\.(\d+)\.",
        lambda k: (
            k.startswith(("vision_model.", "visual_projection.")) and not k.endswith("position_ids")
        ),
    ),
}

# the inverse of each open_clip combine (our tensor -> the source tensor); others are copied
_OC_INVERSE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "class_token": lambda x: x.reshape(-1),
    "pos_embedding": lambda x: x[0],
    "proj.weight": lambda x: x.t(),
}


def to_open_clip(state: Tensors, layers: int) -> Tensors:
    """Our state dict in open_clip keys (`visual.*`): the open_clip plan run backwards."""
    plan = _open_clip(layers, {})
    return {
        srcs[0]: _OC_INVERSE.get(ours, lambda x: x)(state[ours]) for ours, (srcs, _) in plan.items()
    }
