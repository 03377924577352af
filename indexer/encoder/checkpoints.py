"""Read CLIP image-tower weights from any common layout into our model's state dict.

Layouts are detected from the file: Birder `.pt`, OpenAI/open_clip `visual.*` state dicts
(.safetensors/.bin/.pt), OpenAI's TorchScript `ViT-L-14.pt`, Hugging Face CLIP folders/files.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from indexer.encoder.fingerprint import projection_fingerprint
from indexer.encoder.keymap import LAYOUTS, Plan, Tensors
from indexer.encoder.model import ACTIVATIONS, CLIPVisionTower, ViTConfig
from indexer.errors import CheckpointError
from indexer.files import open_regular, sha256_file

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_WEIGHT_FILES += ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass
class Checkpoint:
    """A checkpoint read and mapped: our config and state dict, the layout and the file read."""

    cfg: ViTConfig
    state: Tensors
    layout: str  # birder | open_clip | torchscript | hf
    file: Path


# --------------------------------------------------------------------------- reading files
def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _looks_like_safetensors(path: Path) -> bool:
    """8-byte little-endian header length, then a JSON object: the safetensors format."""
    try:
        with open_regular(path) as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size


def _read_safetensors(path: Path) -> Tensors:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(
            path, f"cannot read safetensors (truncated or corrupt): {first_line(exc)}"
        ) from None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_torch(path: Path) -> tuple[dict, str | None]:
    """torch.load(weights_only=True); only OpenAI's TorchScript archive goes through jit.load."""
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                path, f"cannot load TorchScript archive: {first_line(exc)}"
            ) from None
        state = module.state_dict()
        return {
            k: v.float() if v.is_floating_point() else v for k, v in state.items()
        }, "torchscript"
    try:
        obj = torch.load(
            str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
        )
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike
        raise CheckpointError(
            path,
            "not a readable PyTorch checkpoint (truncated, corrupt or foreign): " + first_line(exc),
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a state dict, found {type(obj).__name__}")
    return obj, None


def config_json(folder: Path) -> dict:
    """A HF folder's config.json as a dict ({} when there is none); one line when unreadable."""
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        return {}
    try:
        with open_regular(cfg_file) as fh:  # a FIFO named config.json must not hang
            config = json.loads(fh.read())
    except (OSError, ValueError) as exc:
        raise CheckpointError(cfg_file, f"unreadable config.json: {first_line(exc)}") from None
    if not isinstance(config, dict):
        raise CheckpointError(cfg_file, "config.json is not a JSON object")
    return config


def _vision_config(config: dict) -> dict:
    """The vision part of a HF config (CLIPModel nests it; projection_dim sits on top)."""
    if isinstance(config.get("vision_config"), dict):
        vision = {k: v for k, v in config["vision_config"].items() if k != "projection_dim"}
        if "projection_dim" in config:
            vision["projection_dim"] = config["projection_dim"]
        return vision
    return config


def read_weights(path: Path) -> tuple[dict, str | None, dict, Path]:
    """(raw tensors, "torchscript" or None, the HF config.json or {}, the weights file read)
    for a file or a HF folder; refuses what is missing or not a regular file."""
    if not path.exists():
        raise CheckpointError(path, "no such file or folder")
    config: dict = {}
    if path.is_dir():
        config = config_json(path)
        found = [path / n for n in HF_WEIGHT_FILES if (path / n).is_file()]
        if not found:
            raise CheckpointError(path, f"folder has none of {', '.join(HF_WEIGHT_FILES)}")
        path = found[0]
    try:  # /dev/zero or a FIFO would be read forever
        open_regular(path).close()
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        return _read_safetensors(path), None, config, path
    tensors, source = _read_torch(path)
    return tensors, source, config, path


def state_dict_of(tensors: dict) -> dict:
    """The state dict inside a checkpoint dict, its keys without `module.`/`model.` prefixes."""
    if isinstance(tensors.get("state_dict"), dict):
        tensors = tensors["state_dict"]
    return {re.sub(r"^(module\.|model\.)", "", str(k)): v for k, v in tensors.items()}


def read_checkpoint(path: str | Path) -> tuple[dict, str, dict, Path]:
    """(raw tensors, layout, config hints, weights file) for any supported path."""
    tensors, source, config, path = read_weights(Path(path).expanduser())
    if isinstance(tensors.get("state"), dict):  # Birder: {state, config, signature, ...}
        return dict(tensors["state"]), "birder", dict(tensors.get("config") or {}), path
    tensors = state_dict_of(tensors)
    if any(k.startswith("visual.") for k in tensors):
        return tensors, source or "open_clip", _vision_config(config), path
    if any(k.startswith("vision_model.") for k in tensors):
        return tensors, "hf", _vision_config(config), path
    sample = ", ".join(list(tensors)[:3]) or "nothing"
    raise CheckpointError(
        path,
        "not a CLIP vision checkpoint (no visual.*, vision_model.* or Birder 'state' keys; "
        f"found {sample})",
    )


def _listing(keys: list[str], limit: int = 4) -> str:
    more = f" ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def map_tensors(
    plan: Plan, tensors: dict, layout: str, file: Path, owns: Callable[[str], bool] | None = None
) -> Tensors:
    """Check the source keys (missing; unexpected among those `owns` claims; not float
    tensors; not finite) and build our state dict from `plan`."""
    needed = [s for srcs, _ in plan.values() for s in srcs]
    missing = [s for s in needed if s not in tensors]
    if missing:
        raise CheckpointError(file, f"missing keys: {_listing(missing)} ({layout} layout)")
    unexpected = sorted(set(k for k in tensors if owns and owns(k)) - set(needed))
    if unexpected:
        raise CheckpointError(file, f"unexpected keys: {_listing(unexpected)} ({layout} layout)")
    state: Tensors = {}
    for ours, (srcs, combine) in plan.items():
        parts = [tensors[s] for s in srcs]
        bad = [s for s, p in zip(srcs, parts, strict=True) if not torch.is_tensor(p)]
        if bad or not all(p.is_floating_point() for p in parts):
            raise CheckpointError(file, f"{(bad or srcs)[0]} is not a float tensor")
        for s, p in zip(srcs, parts, strict=True):
            if not torch.isfinite(p.sum()) and not torch.isfinite(p).all():  # sum: no copy
                what = "NaN" if bool(torch.isnan(p).any()) else "Inf"
                raise CheckpointError(file, f"weights are not finite ({s} has {what})")
        try:
            value = combine(*parts) if combine else parts[0]
        except RuntimeError as exc:
            shapes = ", ".join(f"{s} {list(p.shape)}" for s, p in zip(srcs, parts, strict=True))
            raise CheckpointError(file, f"cannot map {shapes}: {first_line(exc)}") from None
        state[ours] = value.float()
    return state


def _infer(state: Tensors, n: int, hints: dict, file: Path) -> ViTConfig:
    """Sizes from the tensor shapes; config hints may set heads, eps, activation (checked)."""
    conv, pos, fc1, proj = (
        state[k] for k in ("conv.weight", "pos_embedding", "blocks.0.fc1.weight", "proj.weight")
    )
    if conv.ndim != 4 or conv.shape[-1] != conv.shape[-2] or pos.ndim != 3 or proj.ndim != 2:
        raise CheckpointError(
            file, f"not a ViT: patch conv {list(conv.shape)}, positions {list(pos.shape)}"
        )
    grid = math.isqrt(max(pos.shape[1] - 1, 0))
    if grid * grid + 1 != pos.shape[1]:
        raise CheckpointError(file, f"{pos.shape[1]} positions is not 1 + a square patch grid")
    width = conv.shape[0]
    heads, eps, act = block_hints(hints, width, file)
    cfg = ViTConfig(
        width=width,
        layers=n,
        heads=heads,
        mlp=fc1.shape[0],
        patch=conv.shape[-1],
        image_size=grid * conv.shape[-1],
        proj_dim=proj.shape[0],
        proj_bias="proj.bias" in state,
        eps=eps,
        act=act,
    )
    said = dict.fromkeys(("hidden_dim", "hidden_size"), cfg.width)  # Birder / HF names
    said |= dict.fromkeys(("num_layers", "num_hidden_layers"), cfg.layers)
    said |= dict.fromkeys(("mlp_dim", "intermediate_size"), cfg.mlp)
    said |= {"patch_size": cfg.patch, "image_size": cfg.image_size, "projection_dim": cfg.proj_dim}
    check_config(said, hints, file)
    return cfg


def block_hints(hints: dict, width: int, file: Path) -> tuple[int, float, str]:
    """Heads, layer-norm eps and activation of a tower `width` wide: from its config where it
    says them (Birder or HF names), else OpenAI's conventions (64-wide heads, 1e-5, QuickGELU)."""
    try:
        heads = int(hints.get("num_heads") or hints.get("num_attention_heads") or width // 64 or 1)
        eps = float(hints.get("layer_norm_eps") or 1e-5)
    except (TypeError, ValueError):
        raise CheckpointError(file, "config has a non-numeric head count or eps") from None
    act = str(hints.get("hidden_act", "quick_gelu")).lower()
    if act not in ACTIVATIONS:
        raise CheckpointError(file, f"activation {act!r} is not supported (quick_gelu or gelu)")
    if heads < 1 or width % heads:
        raise CheckpointError(file, f"width {width} is not divisible by {heads} heads")
    return heads, eps, act


def check_config(said: dict, hints: dict, file: Path) -> None:
    """A config value that contradicts the size read from the weights (`said`) is refused."""
    for key, actual in said.items():
        if hints.get(key) not in (None, actual):
            raise CheckpointError(
                file, f"config says {key}={hints[key]} but the weights have {actual}"
            )


def check_shapes(
    model: Callable[[], torch.nn.Module], state: Tensors, plan: Plan, file: Path
) -> None:
    """Every tensor must have the shape `model()` (built here on the meta device) expects."""
    with torch.device("meta"):
        expected = model().state_dict()
    for key, want in expected.items():
        got = state[key].shape
        if got != want.shape:
            src = "+".join(plan[key][0])
            raise CheckpointError(
                file, f"wrong shape for {src}: {list(got)}, expected {list(want.shape)}"
            )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read any supported layout and map it onto our model's keys, checking everything.

    Raises CheckpointError (one line naming the file) for anything we cannot use.
    """
    tensors, layout, hints, file = read_checkpoint(path)
    spec = LAYOUTS["open_clip" if layout == "torchscript" else layout]
    found = {int(m.group(1)) for k in tensors if (m := re.match(spec.blocks, k))}
    if not found:
        raise CheckpointError(file, f"{layout} checkpoint has no transformer blocks")
    n = max(found) + 1
    plan = spec.plan(n, tensors)
    owns = LAYOUTS["open_clip" if layout == "torchscript" else layout].owns
    state = map_tensors(plan, tensors, layout, file, owns)
    cfg = _infer(state, n, hints, file)
    check_shapes(lambda: CLIPVisionTower(cfg), state, plan, file)
    return Checkpoint(cfg, state, layout, file)


def build_model(ckpt: Checkpoint) -> CLIPVisionTower:
    """Our model holding the checkpoint's tensors (built on meta: no random init of 300M params)."""
    with torch.device("meta"):
        model = CLIPVisionTower(ckpt.cfg)
    state = {k: v.contiguous() for k, v in ckpt.state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # check_shapes makes this a bug, but say which file
        raise CheckpointError(ckpt.file, f"weights do not fit: {first_line(exc)}") from None
    model.reset_normalization()
    return model.eval()


def identity(ckpt: Checkpoint, sha256: str | None = None) -> dict:
    """What an index pins: weights sha256 (hashed unless known), architecture, dim, layout, and
    the projection's fingerprint (a text tower is checked against it: fingerprint.py)."""
    return {
        "weights_sha256": sha256 or sha256_file(ckpt.file),
        "architecture": ckpt.cfg.architecture,
        "dim": ckpt.cfg.proj_dim,
        "layout": ckpt.layout,
        "image_fingerprint": projection_fingerprint(ckpt.state["proj.weight"]),
    }
