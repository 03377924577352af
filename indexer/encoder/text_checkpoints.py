"""Read CLIP text-tower weights from the common layouts into our text model's state dict.

Layouts: OpenAI / open_clip full-CLIP state dicts (`token_embedding.weight`,
`transformer.resblocks.N.*`, `ln_final.*`, `text_projection`), OpenAI's TorchScript archive
(the same keys), and Hugging Face `CLIPModel` / `CLIPTextModelWithProjection` folders or files
(`text_model.*`, `text_projection.weight`). Other keys (the image tower's) are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from indexer.encoder.checkpoints import (
    HF_WEIGHT_FILES,
    _first_line,
    _looks_like_safetensors,
    _read_safetensors,
    _read_torch,
)
from indexer.encoder.keymap import Plan, Tensors
from indexer.encoder.model import ACTIVATIONS
from indexer.encoder.text_model import CLIPTextTower, TextConfig
from indexer.errors import CheckpointError
from indexer.files import open_regular, sha256_file

HEAD_WIDTH = 64  # OpenAI's convention: a state dict does not say its head count
_OC_BLOCK = "ln_1:norm1 attn.out_proj:attn.proj ln_2:norm2 mlp.c_fc:fc1 mlp.c_proj:fc2"
_HF_BLOCK = (
    "layer_norm1:norm1 self_attn.out_proj:attn.proj layer_norm2:norm2 mlp.fc1:fc1 mlp.fc2:fc2"
)
_BLOCKS = {
    "open_clip": r"transformer\.resblocks\.(\d+)\.",
    "hf": r"text_model\.encoder\.layers\.(\d+)\.",
}


@dataclass
class TextCheckpoint:
    """A text tower read and mapped: our config and state dict, the layout and the file read."""

    cfg: TextConfig
    state: Tensors
    layout: str  # open_clip | torchscript | hf
    file: Path


def _open_clip_plan(n: int) -> Plan:
    plan: Plan = {
        "token_embedding.weight": (("token_embedding.weight",), None),
        "pos_embedding": (("positional_embedding",), None),
        "norm.weight": (("ln_final.weight",), None),
        "norm.bias": (("ln_final.bias",), None),
        "proj.weight": (("text_projection",), lambda x: x.t().contiguous()),  # x @ P
    }
    for i in range(n):
        b, o = f"transformer.resblocks.{i}.", f"blocks.{i}."
        plan[o + "attn.qkv.weight"] = ((b + "attn.in_proj_weight",), None)
        plan[o + "attn.qkv.bias"] = ((b + "attn.in_proj_bias",), None)
        for src, dst in (pair.split(":") for pair in _OC_BLOCK.split()):
            for p in ("weight", "bias"):
                plan[f"{o}{dst}.{p}"] = ((f"{b}{src}.{p}",), None)
    return plan


def _hf_plan(n: int) -> Plan:
    t = "text_model."
    plan: Plan = {
        "token_embedding.weight": ((t + "embeddings.token_embedding.weight",), None),
        "pos_embedding": ((t + "embeddings.position_embedding.weight",), None),
        "norm.weight": ((t + "final_layer_norm.weight",), None),
        "norm.bias": ((t + "final_layer_norm.bias",), None),
        "proj.weight": (("text_projection.weight",), None),  # Linear: [proj, width]
    }
    for i in range(n):
        b, o = f"{t}encoder.layers.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            qkv = tuple(f"{b}self_attn.{x}_proj.{p}" for x in ("q", "k", "v"))
            plan[f"{o}attn.qkv.{p}"] = (qkv, lambda q, k, v: torch.cat([q, k, v]))
        for src, dst in (pair.split(":") for pair in _HF_BLOCK.split()):
            for p in ("weight", "bias"):
                plan[f"{o}{dst}.{p}"] = ((f"{b}{src}.{p}",), None)
    return plan


def _read_text_config(folder: Path) -> dict:
    """The text part of a HF config.json (CLIPModel nests it; CLIPTextModel* has it on top)."""
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        return {}
    try:
        with open_regular(cfg_file) as fh:  # a FIFO named config.json must not hang
            config = json.loads(fh.read())
    except (OSError, ValueError) as exc:
        raise CheckpointError(cfg_file, f"unreadable config.json: {_first_line(exc)}") from None
    if not isinstance(config, dict):
        raise CheckpointError(cfg_file, "config.json is not a JSON object")
    text = config.get("text_config")
    return dict(text) if isinstance(text, dict) else config


def _read_tensors(path: Path) -> tuple[dict, str, dict, Path]:
    """(raw tensors, layout, config hints, weights file) for a file or a HF folder."""
    if not path.exists():
        raise CheckpointError(path, "no such file or folder")
    hints: dict = {}
    if path.is_dir():
        hints = _read_text_config(path)
        found = [path / n for n in HF_WEIGHT_FILES if (path / n).is_file()]
        if not found:
            raise CheckpointError(path, f"folder has none of {', '.join(HF_WEIGHT_FILES)}")
        path = found[0]
    try:  # /dev/zero or a FIFO would be read forever
        open_regular(path).close()
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        tensors, source = _read_safetensors(path), None
    else:
        tensors, source = _read_torch(path)
    if isinstance(tensors.get("state_dict"), dict):
        tensors = tensors["state_dict"]
    tensors = {re.sub(r"^(module\.|model\.)", "", str(k)): v for k, v in tensors.items()}
    if "token_embedding.weight" in tensors:
        return tensors, source or "open_clip", hints, path
    if any(k.startswith("text_model.") for k in tensors):
        return tensors, "hf", hints, path
    sample = ", ".join(list(tensors)[:3]) or "nothing"
    raise CheckpointError(
        path,
        "has no CLIP text tower (no token_embedding.weight or text_model.* keys; "
        f"found {sample}): an image-only checkpoint needs separate text weights",
    )


def _check_finite(p: torch.Tensor, key: str, file: Path) -> None:
    if not torch.isfinite(p.sum()) and not torch.isfinite(p).all():  # sum: no copy
        what = "NaN" if bool(torch.isnan(p).any()) else "Inf"
        raise CheckpointError(file, f"weights are not finite ({key} has {what})")


def _apply(plan: Plan, tensors: dict, layout: str, file: Path) -> Tensors:
    """Check the source keys (missing, not float tensors, not finite); build our state dict."""
    missing = [s for srcs, _ in plan.values() for s in srcs if s not in tensors]
    if missing:
        more = f" ... ({len(missing)} in all)" if len(missing) > 4 else ""
        raise CheckpointError(file, f"missing keys: {', '.join(missing[:4])}{more} ({layout})")
    state: Tensors = {}
    for ours, (srcs, combine) in plan.items():
        parts = [tensors[s] for s in srcs]
        for s, p in zip(srcs, parts, strict=True):
            if not torch.is_tensor(p) or not p.is_floating_point():
                raise CheckpointError(file, f"{s} is not a float tensor")
            _check_finite(p, s, file)
        try:
            value = combine(*parts) if combine else parts[0]
        except RuntimeError as exc:
            shapes = ", ".join(f"{s} {list(p.shape)}" for s, p in zip(srcs, parts, strict=True))
            raise CheckpointError(file, f"cannot map {shapes}: {_first_line(exc)}") from None
        state[ours] = value.float()
    return state


def _infer(state: Tensors, n: int, hints: dict, file: Path) -> TextConfig:
    """Sizes from the tensor shapes; a HF config may set heads, eps and activation."""
    emb, pos, fc1, proj = (
        state[k]
        for k in ("token_embedding.weight", "pos_embedding", "blocks.0.fc1.weight", "proj.weight")
    )
    if emb.ndim != 2 or pos.ndim != 2 or fc1.ndim != 2 or proj.ndim != 2:
        raise CheckpointError(file, "embedding, MLP or projection tensors have the wrong rank")
    width = emb.shape[1]
    try:
        heads = int(hints.get("num_attention_heads") or max(1, width // HEAD_WIDTH))
        eps = float(hints.get("layer_norm_eps") or 1e-5)
    except (TypeError, ValueError):
        raise CheckpointError(file, "config has a non-numeric head count or eps") from None
    act = str(hints.get("hidden_act", "quick_gelu")).lower()
    if act not in ACTIVATIONS:
        raise CheckpointError(file, f"activation {act!r} is not supported (quick_gelu or gelu)")
    if heads < 1 or width % heads:
        raise CheckpointError(file, f"width {width} is not divisible by {heads} heads")
    cfg = TextConfig(
        vocab=emb.shape[0],
        context=pos.shape[0],
        width=width,
        layers=n,
        heads=heads,
        mlp=fc1.shape[0],
        proj_dim=proj.shape[0],
        eps=eps,
        act=act,
    )
    said = {"hidden_size": cfg.width, "num_hidden_layers": cfg.layers, "vocab_size": cfg.vocab}
    said |= {"intermediate_size": cfg.mlp, "max_position_embeddings": cfg.context}
    for key, actual in said.items():
        if hints.get(key) not in (None, actual):
            raise CheckpointError(
                file, f"config says {key}={hints[key]} but the weights have {actual}"
            )
    return cfg


def _check_shapes(cfg: TextConfig, state: Tensors, plan: Plan, file: Path) -> None:
    """Every tensor must have the shape our model (built on the meta device) expects."""
    with torch.device("meta"):
        expected = CLIPTextTower(cfg).state_dict()
    for key, want in expected.items():
        if state[key].shape != want.shape:
            src = "+".join(plan[key][0])
            raise CheckpointError(
                file,
                f"wrong shape for {src}: {list(state[key].shape)}, expected {list(want.shape)}",
            )


def load_text_checkpoint(path: str | Path) -> TextCheckpoint:
    """Read any supported layout's text tower and map it onto our keys, checking everything.

    Raises CheckpointError (one line naming the file) for anything we cannot use.
    """
    tensors, layout, hints, file = _read_tensors(Path(path).expanduser())
    kind = "hf" if layout == "hf" else "open_clip"
    found = {int(m.group(1)) for k in tensors if (m := re.match(_BLOCKS[kind], k))}
    if not found:
        raise CheckpointError(file, f"{layout} checkpoint has no text transformer blocks")
    n = max(found) + 1
    plan = _hf_plan(n) if kind == "hf" else _open_clip_plan(n)
    state = _apply(plan, tensors, layout, file)
    cfg = _infer(state, n, hints, file)
    _check_shapes(cfg, state, plan, file)
    return TextCheckpoint(cfg, state, layout, file)


def build_text_model(ckpt: TextCheckpoint) -> CLIPTextTower:
    """Our text model holding the checkpoint's tensors (built on meta: no random init)."""
    with torch.device("meta"):
        model = CLIPTextTower(ckpt.cfg)
    state = {k: v.contiguous() for k, v in ckpt.state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # _check_shapes makes this a bug, but say which file
        raise CheckpointError(ckpt.file, f"weights do not fit: {_first_line(exc)}") from None
    return model.eval()


def text_identity(ckpt: TextCheckpoint, sha256: str | None = None) -> dict:
    """What an index may pin: weights sha256 (hashed unless known), architecture, dim, layout.

    The same keys as the image encoder's identity; one full-CLIP file gives both the same sha.
    """
    return {
        "weights_sha256": sha256 or sha256_file(ckpt.file),
        "architecture": ckpt.cfg.architecture,
        "dim": ckpt.cfg.proj_dim,
        "layout": ckpt.layout,
    }
