"""Read CLIP text-tower weights from the common layouts into our text model's state dict.

Layouts: OpenAI / open_clip full-CLIP state dicts (`token_embedding.weight`,
`transformer.resblocks.N.*`, `ln_final.*`, `text_projection`), OpenAI's TorchScript archive
(the same keys), and Hugging Face `CLIPModel` / `CLIPTextModelWithProjection` folders or files
(`text_model.*`, `text_projection.weight`). Other keys (the image tower's) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from indexer.encoder.checkpoints import (
    block_hints,
    check_config,
    check_shapes,
    first_line,
    map_tensors,
    read_weights,
    state_dict_of,
)
from indexer.encoder.fingerprint import projection_fingerprint
from indexer.encoder.keymap import LAYOUTS, Plan, Tensors, hf_blocks, open_clip_blocks
from indexer.encoder.text_model import CLIPTextTower, TextConfig
from indexer.errors import CheckpointError
from indexer.files import sha256_file

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
    image_fingerprint: list[float] | None = None  # of the file's image projection, if it has one


def _open_clip_plan(n: int) -> Plan:
    plan: Plan = {
        "token_embedding.weight": (("token_embedding.weight",), None),
        "pos_embedding": (("positional_embedding",), None),
        "norm.weight": (("ln_final.weight",), None),
        "norm.bias": (("ln_final.bias",), None),
        "proj.weight": (("text_projection",), lambda x: x.t().contiguous()),  # x @ P
    }
    return {**plan, **open_clip_blocks(n, "transformer.resblocks.")}


def _hf_plan(n: int) -> Plan:
    t = "text_model."
    plan: Plan = {
        "token_embedding.weight": ((t + "embeddings.token_embedding.weight",), None),
        "pos_embedding": ((t + "embeddings.position_embedding.weight",), None),
        "norm.weight": ((t + "final_layer_norm.weight",), None),
        "norm.bias": ((t + "final_layer_norm.bias",), None),
        "proj.weight": (("text_projection.weight",), None),  # Linear: [proj, width]
    }
    return {**plan, **hf_blocks(n, t + "encoder.layers.")}


def _text_config(config: dict) -> dict:
    """The text part of a HF config (CLIPModel nests it; CLIPTextModel* has it on top)."""
    text = config.get("text_config")
    return dict(text) if isinstance(text, dict) else config


def _read_tensors(path: Path) -> tuple[dict, str, dict, Path]:
    """(raw tensors, layout, config hints, weights file) for a file or a HF folder."""
    tensors, source, config, path = read_weights(path)
    tensors = state_dict_of(tensors)
    if "token_embedding.weight" in tensors:
        return tensors, source or "open_clip", _text_config(config), path
    if any(k.startswith("text_model.") for k in tensors):
        return tensors, "hf", _text_config(config), path
    sample = ", ".join(list(tensors)[:3]) or "nothing"
    raise CheckpointError(
        path,
        "has no CLIP text tower (no token_embedding.weight or text_model.* keys; "
        f"found {sample}): an image-only checkpoint needs separate text weights",
    )


def _infer(state: Tensors, n: int, hints: dict, file: Path) -> TextConfig:
    """Sizes from the tensor shapes; a HF config may set heads, eps and activation."""
    emb, pos, fc1, proj = (
        state[k]
        for k in ("token_embedding.weight", "pos_embedding", "blocks.0.fc1.weight", "proj.weight")
    )
    if emb.ndim != 2 or pos.ndim != 2 or fc1.ndim != 2 or proj.ndim != 2:
        raise CheckpointError(file, "embedding, MLP or projection tensors have the wrong rank")
    width = emb.shape[1]
    heads, eps, act = block_hints(hints, width, file)
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
    check_config(said, hints, file)
    return cfg


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
    state = map_tensors(plan, tensors, layout, file)
    cfg = _infer(state, n, hints, file)
    check_shapes(lambda: CLIPTextTower(cfg), state, plan, file)
    return TextCheckpoint(cfg, state, layout, file, _image_fingerprint(tensors, kind, file))


def _image_fingerprint(tensors: dict, kind: str, file: Path) -> list[float] | None:
    """The fingerprint of the image projection stored beside the text tower (the image loader's
    key map says where), or None for a text-only file."""
    entry = LAYOUTS[kind].plan(0, tensors)["proj.weight"]
    if not all(src in tensors for src in entry[0]):
        return None
    proj = map_tensors({"proj.weight": entry}, tensors, kind, file)["proj.weight"]
    return projection_fingerprint(proj)


def build_text_model(ckpt: TextCheckpoint) -> CLIPTextTower:
    """Our text model holding the checkpoint's tensors (built on meta: no random init)."""
    with torch.device("meta"):
        model = CLIPTextTower(ckpt.cfg)
    state = {k: v.contiguous() for k, v in ckpt.state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # check_shapes makes this a bug, but say which file
        raise CheckpointError(ckpt.file, f"weights do not fit: {first_line(exc)}") from None
    return model.eval()


def text_identity(ckpt: TextCheckpoint, sha256: str | None = None) -> dict:
    """What an index may pin: weights sha256 (hashed unless known), architecture, dim, layout,
    and the fingerprint of the image projection beside it (None: a text-only file).

    The same keys as the image encoder's identity; one full-CLIP file gives both the same sha
    and the same fingerprint.
    """
    return {
        "weights_sha256": sha256 or sha256_file(ckpt.file),
        "architecture": ckpt.cfg.architecture,
        "dim": ckpt.cfg.proj_dim,
        "layout": ckpt.layout,
        "image_fingerprint": ckpt.image_fingerprint,
    }
