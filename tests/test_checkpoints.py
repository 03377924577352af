"""Checkpoint layouts, key maps and one-line errors (the default weights: test_weights_cli)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import (
    EXPECTED,
    FIXTURES,
    TINY_BIRDER,
    TINY_HF,
    TINY_OPEN_CLIP,
    normalized,
    torchscript_clip,
)
from safetensors.torch import load_file, save_file

from indexer.encoder import CheckpointError, load_encoder
from indexer.encoder.checkpoints import load_checkpoint

PIXELS = EXPECTED["pixels"][:4]
TOL = 1e-4


def outputs(weights) -> dict[str, np.ndarray]:
    return load_encoder(weights, device="cpu", dtype="fp32").encode_pixels(PIXELS)


def assert_reference(out: dict, proj_key: str = "projection_no_bias", tol: float = TOL) -> None:
    assert np.abs(out["projection"] - normalized(EXPECTED[proj_key][:4])).max() <= tol
    assert np.abs(out["embedding"] - EXPECTED["embedding"][:4]).max() <= tol
    assert np.abs(out["features"] - EXPECTED["features"][:4]).max() <= tol


@pytest.fixture(scope="module")
def open_clip_state() -> dict[str, torch.Tensor]:
    return load_file(str(TINY_OPEN_CLIP))


@pytest.fixture(scope="module")
def hf_state() -> dict[str, torch.Tensor]:
    return load_file(str(TINY_HF / "model.safetensors"))


# --------------------------------------------------------------------------- layouts
def test_sizes_and_layout_come_from_the_checkpoint():
    for path, layout, bias in [
        (TINY_BIRDER, "birder", True),
        (TINY_OPEN_CLIP, "open_clip", False),
        (TINY_HF, "hf", False),
    ]:
        ckpt = load_checkpoint(path)
        assert ckpt.layout == layout and ckpt.cfg.proj_bias is bias
        c = ckpt.cfg
        sizes = (c.width, c.layers, c.heads, c.mlp, c.patch, c.image_size, c.proj_dim, c.eps)
        assert sizes == (128, 2, 2, 512, 14, 224, 32, 1e-5)
    assert load_checkpoint(TINY_HF).file == TINY_HF / "model.safetensors"


@pytest.mark.parametrize("name", ["open_clip.bin", "open_clip.pt"])
def test_torch_saved_open_clip_state_dict_loads(tmp_path, open_clip_state, name):
    torch.save(open_clip_state, tmp_path / name)
    assert_reference(outputs(tmp_path / name))


def test_full_clip_models_ignore_the_text_tower(tmp_path, open_clip_state, hf_state):
    """open_clip/OpenAI and HF CLIPModel files hold the text tower too: it is ignored."""
    text = {"token_embedding.weight": torch.randn(10, 8), "logit_scale": torch.tensor(4.6)}
    text["transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(24, 8)
    torch.save({"state_dict": {**open_clip_state, **text}}, tmp_path / "full.pt")
    assert_reference(outputs(tmp_path / "full.pt"))
    folder = tmp_path / "clipmodel"
    folder.mkdir()
    hf_text = {"text_model.embeddings.token_embedding.weight": torch.randn(10, 8)}
    hf_text["text_projection.weight"] = torch.randn(32, 8)
    hf_text["logit_scale"] = torch.tensor(4.6)
    save_file({**hf_state, **hf_text}, str(folder / "model.safetensors"))
    vision = json.loads((TINY_HF / "config.json").read_text())
    vision["projection_dim"] = 512  # CLIPModel: the vision default, overridden on top
    config = {"architectures": ["CLIPModel"], "projection_dim": 32, "vision_config": vision}
    (folder / "config.json").write_text(json.dumps(config))
    assert_reference(outputs(folder))


def test_hf_pytorch_model_bin_folder(tmp_path, hf_state):
    folder = tmp_path / "hf_bin"
    folder.mkdir()
    shutil.copy(TINY_HF / "config.json", folder)
    torch.save(hf_state, folder / "pytorch_model.bin")
    assert_reference(outputs(folder))


def test_safetensors_content_is_detected_whatever_the_name(tmp_path):
    shutil.copy(TINY_OPEN_CLIP, tmp_path / "weights.bin")
    assert load_checkpoint(tmp_path / "weights.bin").layout == "open_clip"


def test_heads_come_from_the_config_when_given(tmp_path, hf_state):
    """Tiny width 128 → 2 heads by the /64 rule; a config saying 4 must be obeyed."""
    folder = tmp_path / "hf4"
    folder.mkdir()
    save_file(hf_state, str(folder / "model.safetensors"))
    config = json.loads((TINY_HF / "config.json").read_text())
    config["num_attention_heads"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    enc = load_encoder(folder, device="cpu", dtype="fp32")
    assert " h4 " in enc.identity["architecture"]
    out = enc.encode_pixels(PIXELS)
    assert np.abs(out["embedding"] - EXPECTED["embedding"][:4]).max() > 100 * TOL
    birder = torch.load(TINY_BIRDER, weights_only=True)
    birder["config"]["num_heads"] = 4
    torch.save(birder, tmp_path / "b4.pt")
    assert load_checkpoint(tmp_path / "b4.pt").cfg.heads == 4


def test_image_size_comes_from_the_position_grid(tmp_path, open_clip_state):
    state = dict(open_clip_state)
    state["visual.positional_embedding"] = state["visual.positional_embedding"][: 1 + 7 * 7]
    save_file(state, str(tmp_path / "small.safetensors"))
    enc = load_encoder(tmp_path / "small.safetensors", device="cpu", dtype="fp32")
    assert enc.image_size == 98 and " i98 " in enc.identity["architecture"]
    crops = np.zeros((2, 98, 98, 3), np.uint8)
    assert enc.encode_uint8(crops).shape == (2, 32)


def test_torchscript_archive(tmp_path, open_clip_state):
    """OpenAI ships ViT-L-14.pt as a TorchScript archive of the whole fp16 CLIP: a tiny one."""
    half = {k: v.half() for k, v in open_clip_state.items()}
    extras = {"logit_scale": torch.tensor(4.6).half(), "token_embedding.weight": torch.randn(9, 4)}

    archive = torchscript_clip(
        tmp_path / "ViT-L-14.pt", {**half, **extras}, {"input_resolution": torch.tensor(224)}
    )
    enc = load_encoder(archive, device="cpu", dtype="fp32")
    assert enc.identity["layout"] == "torchscript"
    assert enc.model.conv.weight.dtype == torch.float32
    got = enc.encode_pixels(PIXELS)
    # Exact against the same fp16-rounded weights in a plain state dict...
    save_file({k: v.float() for k, v in half.items()}, str(tmp_path / "rounded.safetensors"))
    ref = outputs(tmp_path / "rounded.safetensors")
    for key in ("projection", "embedding", "features"):
        assert np.abs(got[key] - ref[key]).max() <= 1e-5
    # ...and within fp16 rounding of the fp32 reference.
    cos = (got["projection"] * normalized(EXPECTED["projection_no_bias"][:4])).sum(axis=1)
    assert cos.min() > 0.999
    assert np.abs(got["embedding"] - EXPECTED["embedding"][:4]).max() <= 0.05


# --------------------------------------------------------------------------- errors
def bad_files(tmp, oc: dict, hf: dict) -> dict:
    """path → words its CheckpointError must contain."""
    (tmp / "truncated.pt").write_bytes(TINY_BIRDER.read_bytes()[:5000])
    (tmp / "truncated.safetensors").write_bytes(TINY_OPEN_CLIP.read_bytes()[:100_000])
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp / "resnet.pt")
    torch.save([1, 2, 3], tmp / "list.pt")
    (tmp / "notes.safetensors").write_text("hello")
    (tmp / "noise.bin").write_bytes(os.urandom(4096))
    (tmp / "photo.pt").write_bytes((FIXTURES / "images" / "bee.jpg").read_bytes())
    missing = {k: v for k, v in oc.items() if k not in ("visual.ln_post.weight", "visual.proj")}
    save_file(missing, str(tmp / "missing.safetensors"))
    save_file({**oc, "visual.surprise": torch.zeros(3)}, str(tmp / "extra.safetensors"))
    save_file({**oc, "visual.ln_post.weight": torch.zeros(7)}, str(tmp / "shape.safetensors"))
    save_file(
        {**oc, "visual.positional_embedding": oc["visual.positional_embedding"][:100]},
        str(tmp / "grid.safetensors"),
    )
    hf_bad = dict(hf)
    hf_bad["vision_model.encoder.layers.1.self_attn.k_proj.weight"] = torch.zeros(128, 64)
    save_file(hf_bad, str(tmp / "hf_qkv.safetensors"))
    (tmp / "empty_dir").mkdir()
    (tmp / "bad_cfg").mkdir()
    (tmp / "bad_cfg" / "config.json").write_text("{nope")
    save_file(hf, str(tmp / "bad_cfg" / "model.safetensors"))
    (tmp / "lying_cfg").mkdir()
    (tmp / "lying_cfg" / "config.json").write_text(json.dumps({"num_hidden_layers": 3}))
    save_file(hf, str(tmp / "lying_cfg" / "model.safetensors"))
    return {
        tmp / "truncated.pt": "truncated",
        tmp / "truncated.safetensors": "cannot read safetensors",
        tmp / "resnet.pt": "not a CLIP vision checkpoint (no visual.*, vision_model.* or Birder",
        tmp / "list.pt": "expected a state dict",
        tmp / "notes.safetensors": "cannot read safetensors",
        tmp / "noise.bin": "not a readable PyTorch checkpoint",
        tmp / "photo.pt": "not a readable PyTorch checkpoint",
        tmp / "missing.safetensors": "missing keys: visual.ln_post.weight, visual.proj",
        tmp / "extra.safetensors": "unexpected keys: visual.surprise",
        tmp / "shape.safetensors": "wrong shape for visual.ln_post.weight: [7], expected [128]",
        tmp / "grid.safetensors": "not 1 + a square patch grid",
        tmp / "hf_qkv.safetensors": "cannot map",
        tmp / "empty_dir": "folder has none of model.safetensors",
        tmp / "bad_cfg" / "config.json": "unreadable config.json",
        tmp / "lying_cfg" / "model.safetensors": "config says num_hidden_layers=3",
        tmp / "absent.pt": "no such file",
    }


def test_bad_checkpoints_are_one_line_errors_naming_the_file(tmp_path, open_clip_state, hf_state):
    cases = bad_files(tmp_path, open_clip_state, hf_state)
    for path, why in cases.items():
        target = path.parent if path.parent.name.endswith("_cfg") else path
        with pytest.raises(CheckpointError) as info:
            load_encoder(target, device="cpu")
        message = str(info.value)
        assert message.startswith(f"{path}: "), message
        assert why in message and "\n" not in message, message
        assert isinstance(info.value, ValueError) and info.value.path == str(path)


def test_birder_missing_key(tmp_path):
    birder = torch.load(TINY_BIRDER, weights_only=True)
    del birder["state"]["encoder.block.1.mlp.3.bias"]
    torch.save(birder, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: encoder\.block\.1\.mlp\.3\.bias"):
        load_checkpoint(tmp_path / "b.pt")
