"""Read CLIP image-tower weights from any common layout into our model's state dict.

Layouts are detected from the file: Birder `.pt`, OpenAI/open_clip `visual.*` state dicts
(.safetensors/.bin/.pt), OpenAI's TorchScript `ViT-L-14.pt`, Hugging Face CLIP folders/files.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from indexer.encoder.model import ViTConfig

Tensors = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A weights file we cannot use; the message is one line naming the file and the problem."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- reading files
def _read_safetensors(path: Path) -> Tensors:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            path, f"cannot read safetensors (truncated or corrupt): {exc}"
        ) from None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_torch(path: Path) -> tuple[dict, str | None]:
    """torch.load with weights_only=True; TorchScript only for OpenAI's archive."""
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise CheckpointError(path, f"cannot load TorchScript archive: {exc}") from None
        return {k: v.float() for k, v in module.state_dict().items()}, "torchscript"
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            path, f"not a readable PyTorch checkpoint (truncated, corrupt or foreign): {first}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a state dict, found {type(obj).__name__}")
    return obj, None


def read_checkpoint(path: str | Path) -> tuple[Tensors, str, dict, Path]:
    """(tensors, layout, extra config, weights file) for any supported path."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(path, "no such file or folder")
    config: dict = {}
    if path.is_dir():
        cfg_file = path / "config.json"
        if cfg_file.exists():
            config = json.loads(cfg_file.read_text())
            config = config.get("vision_config", config)
        for name in ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise CheckpointError(path, "folder has no model.safetensors or pytorch_model.bin")
    if path.suffix == ".safetensors":
        tensors: dict = _read_safetensors(path)
        source = None
    else:
        tensors, source = _read_torch(path)
    if "state" in tensors and isinstance(tensors["state"], dict):  # Birder
        config = {**(tensors.get("config") or {}), "signature": tensors.get("signature")}
        return dict(tensors["state"]), "birder", config, path
    if "state_dict" in tensors and isinstance(tensors["state_dict"], dict):
        tensors = tensors["state_dict"]
    tensors = {re.sub(r"^(module\.|model\.)", "", k): v for k, v in tensors.items()}
    if any(k.startswith("visual.") for k in tensors):
        return tensors, source or "open_clip", config, path
    if any(k.startswith("vision_model.") for k in tensors):
        return tensors, "hf", config, path
    raise CheckpointError(
        path, "not a CLIP vision checkpoint (no Birder 'state', visual.* or vision_model.* keys)"
    )


# --------------------------------------------------------------------------- key maps
def _block_count(keys: list[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _birder(t: Tensors, n: int) -> Tensors:
    out = {
        "conv.weight": t["conv_proj.weight"],
        "class_token": t["class_token"],
        "pos_embedding": t["pos_embedding"],
        "pre_norm.weight": t["encoder.pre_block.0.weight"],
        "pre_norm.bias": t["encoder.pre_block.0.bias"],
        "norm.weight": t["norm.weight"],
        "norm.bias": t["norm.bias"],
        "proj.weight": t["classifier.weight"],
    }
    if "classifier.bias" in t:
        out["proj.bias"] = t["classifier.bias"]
    names = {"norm1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj"}
    names.update({"norm2": "norm2", "mlp.0": "fc1", "mlp.3": "fc2"})
    for i in range(n):
        for src, dst in names.items():
            for p in ("weight", "bias"):
                out[f"blocks.{i}.{dst}.{p}"] = t[f"encoder.block.{i}.{src}.{p}"]
    return out


# open_clip ⇄ ours: plain renames (the class token, positions and projection are reshaped).
_OC_TOP = {"conv1.weight": "conv.weight", "ln_pre": "pre_norm", "ln_post": "norm"}
_OC_BLOCK = {
    "ln_1": "norm1",
    "attn.out_proj": "attn.proj",
    "ln_2": "norm2",
    "mlp.c_fc": "fc1",
    "mlp.c_proj": "fc2",
}


def _oc_pairs(n: int) -> list[tuple[str, str]]:
    """(open_clip key, our key) for every renamed tensor of an n-block tower."""
    pairs = [("visual.conv1.weight", "conv.weight")]
    for src, dst in list(_OC_TOP.items())[1:]:
        pairs += [(f"visual.{src}.{p}", f"{dst}.{p}") for p in ("weight", "bias")]
    for i in range(n):
        b, o = f"visual.transformer.resblocks.{i}.", f"blocks.{i}."
        pairs += [(b + "attn.in_proj_weight", o + "attn.qkv.weight")]
        pairs += [(b + "attn.in_proj_bias", o + "attn.qkv.bias")]
        for src, dst in _OC_BLOCK.items():
            pairs += [(f"{b}{src}.{p}", f"{o}{dst}.{p}") for p in ("weight", "bias")]
    return pairs


def _open_clip(t: Tensors, n: int) -> Tensors:
    width = t["visual.class_embedding"].shape[-1]
    out = {ours: t[theirs] for theirs, ours in _oc_pairs(n)}
    out["class_token"] = t["visual.class_embedding"].reshape(1, 1, width)
    out["pos_embedding"] = t["visual.positional_embedding"].reshape(1, -1, width)
    out["proj.weight"] = t["visual.proj"].t().contiguous()
    return out


def to_open_clip(state: Tensors, n: int) -> Tensors:
    """Our state dict in open_clip keys (the inverse of `_open_clip`), e.g. for benches."""
    out = {theirs: state[ours] for theirs, ours in _oc_pairs(n)}
    out["visual.class_embedding"] = state["class_token"].reshape(-1)
    out["visual.positional_embedding"] = state["pos_embedding"][0]
    out["visual.proj"] = state["proj.weight"].t().contiguous()
    return {k: v.contiguous() for k, v in out.items()}


def _hf(t: Tensors, n: int) -> Tensors:
    v = "vision_model."
    width = t[v + "embeddings.class_embedding"].shape[-1]
    out = {
        "conv.weight": t[v + "embeddings.patch_embedding.weight"],
        "class_token": t[v + "embeddings.class_embedding"].reshape(1, 1, width),
        "pos_embedding": t[v + "embeddings.position_embedding.weight"].reshape(1, -1, width),
        "pre_norm.weight": t[v + "pre_layrnorm.weight"],
        "pre_norm.bias": t[v + "pre_layrnorm.bias"],
        "norm.weight": t[v + "post_layernorm.weight"],
        "norm.bias": t[v + "post_layernorm.bias"],
        "proj.weight": t["visual_projection.weight"],
    }
    for i in range(n):
        b = f"{v}encoder.layers.{i}."
        o = f"blocks.{i}."
        for p in ("weight", "bias"):
            out[f"{o}attn.qkv.{p}"] = torch.cat(
                [t[f"{b}self_attn.{x}_proj.{p}"] for x in ("q", "k", "v")]
            )
        for src, dst in (
            ("layer_norm1", "norm1"),
            ("self_attn.out_proj", "attn.proj"),
            ("layer_norm2", "norm2"),
            ("mlp.fc1", "fc1"),
            ("mlp.fc2", "fc2"),
        ):
            for p in ("weight", "bias"):
                out[f"{o}{dst}.{p}"] = t[f"{b}{src}.{p}"]
    return out


# layout → (key map, block-index pattern, keys that belong to the image tower)
_LAYOUTS: dict[str, tuple[Callable[[Tensors, int], Tensors], str, Callable[[str], bool]]] = {
    "birder": (_birder, r"encoder\.block\.(\d+)\.", lambda k: True),
    "open_clip": (
        _open_clip,
        r"visual\.transformer\.resblocks\.(\d+)\.",
        lambda k: k.startswith("visual."),
    ),
    "hf": (
        _hf,
        r"vision_model\.encoder\.layers\.(\d+)\.",
        lambda k: (
            k.startswith(("vision_model.", "visual_projection.")) and not k.endswith("position_ids")
        ),
    ),
}


def convert(path: str | Path) -> tuple[ViTConfig, Tensors, str, Path]:
    """Read any layout and return (config, our state dict, layout name, weights file)."""
    tensors, layout, extra, weights_file = read_checkpoint(path)
    family = "open_clip" if layout == "torchscript" else layout
    mapper, pattern, ours = _LAYOUTS[family]
    keys = [k for k in tensors if ours(k)]
    n = _block_count(keys, pattern)
    if n == 0:
        raise CheckpointError(weights_file, f"{layout} checkpoint has no transformer blocks")
    try:
        state = mapper(tensors, n)
    except KeyError as exc:
        raise CheckpointError(
            weights_file, f"missing key {exc.args[0]!r} ({layout} layout)"
        ) from None
    used = _source_keys(family, tensors, n)
    unexpected = sorted(set(keys) - used)
    if unexpected:
        shown = ", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise CheckpointError(weights_file, f"unexpected keys for {layout} layout: {shown}")
    state = {k: v.float() for k, v in state.items()}
    width = state["class_token"].shape[-1]
    grid_tokens = state["pos_embedding"].shape[1] - 1
    patch = state["conv.weight"].shape[-1]
    heads = int(extra.get("num_heads") or extra.get("num_attention_heads") or max(1, width // 64))
    cfg = ViTConfig(
        width=width,
        layers=n,
        heads=heads,
        mlp=state["blocks.0.fc1.weight"].shape[0],
        patch=patch,
        image_size=int(round(grid_tokens**0.5)) * patch,
        proj_dim=state["proj.weight"].shape[0],
        proj_bias="proj.bias" in state,
        eps=float(extra.get("layer_norm_eps", 1e-5)),
    )
    return cfg, state, layout, weights_file


def _source_keys(family: str, tensors: Tensors, n: int) -> set[str]:
    """The source keys a mapper reads (to report unexpected ones)."""
    probe = _KeyProbe(tensors)
    _LAYOUTS[family][0](probe, n)  # type: ignore[arg-type]
    return probe.read


class _KeyProbe(dict):
    def __init__(self, tensors: Tensors) -> None:
        super().__init__(tensors)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if super().__contains__(key):
            self.read.add(str(key))
            return True
        return False
