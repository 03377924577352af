"""The encoder equals the reference (birder 0.8.4) on every checkpoint layout and all 13 images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FIXTURES, TINY_BIRDER, TINY_HF, TINY_OPEN_CLIP

from indexer import imaging
from indexer.encoder import CheckpointError, load_encoder

EXPECTED = np.load(FIXTURES / "tiny_expected.npz")
NAMES = [str(n) for n in EXPECTED["names"]]
IMAGES = [FIXTURES / "images" / n for n in NAMES]


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_preprocessing_matches_reference_pixels():
    pixels = np.stack([imaging.load_pixels(p) for p in IMAGES])
    assert pixels.shape == (13, 3, 224, 224)
    assert np.abs(pixels - EXPECTED["pixels"]).max() <= 1e-5


LAYOUTS = [
    (TINY_BIRDER, "projection", "birder"),
    (TINY_OPEN_CLIP, "projection_no_bias", "open_clip"),
    (TINY_HF, "projection_no_bias", "hf"),
    (TINY_HF / "model.safetensors", "projection_no_bias", "hf"),
]


@pytest.mark.parametrize("weights,proj_key,layout", LAYOUTS, ids=lambda v: str(v)[-24:])
def test_outputs_match_reference(weights, proj_key, layout):
    enc = load_encoder(weights, device="cpu", dtype="fp32")
    assert enc.identity["layout"] == layout
    out = enc.embed(IMAGES, features=True, batch_size=5)
    assert out.projection.shape == (13, 32) and out.features.shape == (13, 128, 16, 16)
    assert np.abs(out.projection - normalized(EXPECTED[proj_key])).max() <= 1e-4
    assert np.abs(out.embedding - EXPECTED["embedding"]).max() <= 1e-4
    assert np.abs(out.features - EXPECTED["features"]).max() <= 1e-4
    assert np.allclose(np.linalg.norm(out.projection, axis=1), 1.0, atol=1e-6)


def test_birder_projection_bias_is_used():
    enc = load_encoder(TINY_BIRDER, device="cpu", dtype="fp32")
    out = enc.encode_pixels(EXPECTED["pixels"][:3])
    assert np.abs(out["projection"] - EXPECTED["projection_normalized"][:3]).max() <= 1e-4
    assert "bias" in enc.identity["architecture"]


def test_uint8_path_equals_float_path_and_bf16_is_close():
    enc = load_encoder(TINY_BIRDER, device="cpu", dtype="fp32")
    crops = np.stack([imaging.to_uint8(imaging.open_image(p)[0]) for p in IMAGES])
    via_uint8 = enc.encode_uint8(crops)
    via_float = enc.encode_pixels(imaging.normalize(crops))["projection"]
    assert np.abs(via_uint8 - via_float).max() <= 1e-5
    bf16 = load_encoder(TINY_BIRDER, device="cpu", dtype="bf16").encode_uint8(crops)
    assert (bf16 * via_float).sum(axis=1).min() > 0.99


def test_torchscript_archive(tmp_path):
    """OpenAI ships ViT-L-14.pt as TorchScript (fp16); a tiny traced stand-in loads the same."""
    from safetensors.torch import load_file

    state = {k: v.half() for k, v in load_file(str(TINY_OPEN_CLIP)).items()}

    class Holder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = torch.nn.Module()
            for key, value in state.items():
                *path, leaf = key.split(".")[1:]
                mod = self.visual
                for part in path:
                    if not hasattr(mod, part):
                        mod.add_module(part, torch.nn.Module())
                    mod = getattr(mod, part)
                mod.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    archive = tmp_path / "ViT-L-14.pt"
    torch.jit.trace(Holder(), torch.zeros(1)).save(str(archive))
    enc = load_encoder(archive, device="cpu", dtype="fp32")
    assert enc.identity["layout"] == "torchscript"
    out = enc.encode_pixels(EXPECTED["pixels"])
    ref = normalized(EXPECTED["projection_no_bias"])
    assert (out["projection"] * ref).sum(axis=1).min() > 0.999  # fp16 weights


def test_pt_and_bin_state_dicts_load(tmp_path):
    from safetensors.torch import load_file

    state = load_file(str(TINY_OPEN_CLIP))
    for name in ("open_clip.bin", "open_clip.pt"):
        torch.save(state, tmp_path / name)
        enc = load_encoder(tmp_path / name, device="cpu", dtype="fp32")
        out = enc.encode_pixels(EXPECTED["pixels"][:2])["projection"]
        assert np.abs(out - normalized(EXPECTED["projection_no_bias"][:2])).max() <= 1e-4


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    from safetensors.torch import load_file, save_file

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(TINY_BIRDER.read_bytes()[:5000])
    foreign = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    state = load_file(str(TINY_OPEN_CLIP))
    missing = dict(state)
    del missing["visual.ln_post.weight"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    extra = dict(state, **{"visual.surprise": torch.zeros(3)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    wrong_shape = dict(state, **{"visual.ln_post.weight": torch.zeros(7)})
    save_file(wrong_shape, str(tmp_path / "shape.safetensors"))
    cases = {
        truncated: "truncated",
        foreign: "not a CLIP vision checkpoint",
        text: "cannot read safetensors",
        tmp_path / "missing.safetensors": "missing key 'visual.ln_post.weight'",
        tmp_path / "extra.safetensors": "unexpected keys",
        tmp_path / "shape.safetensors": "do not fit",
        tmp_path / "absent.pt": "no such file",
    }
    for path, why in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_encoder(path, device="cpu")
        message = str(info.value)
        assert str(path) in message and why in message and "\n" not in message, message


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device"):
        load_encoder(TINY_BIRDER, device="tpu")
