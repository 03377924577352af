"""The encoder equals the reference (birder 0.8.4) on every checkpoint layout and every image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import EXPECTED, FIXTURES, TINY_BIRDER, TINY_HF, TINY_OPEN_CLIP, normalized
from PIL import Image

from indexer import imaging
from indexer.encoder import DeviceError, Embeddings, load_encoder

NAMES = [str(n) for n in EXPECTED["names"]]
IMAGES = [FIXTURES / "images" / n for n in NAMES]
N = len(IMAGES)
TOL = 1e-4


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """uint8 [N, 224, 224, 3]: the contract up to the crop, for every fixture image."""
    return np.stack([imaging.to_uint8(imaging.open_image(p)[0]) for p in IMAGES])


@pytest.fixture(scope="module")
def birder():
    return load_encoder(TINY_BIRDER, device="cpu", dtype="fp32")


def test_preprocessing_matches_reference_pixels(crops):
    assert sorted(NAMES) == sorted(p.name for p in (FIXTURES / "images").iterdir())
    pixels = np.stack([imaging.load_pixels(p) for p in IMAGES])
    assert pixels.shape == (N, 3, 224, 224)
    assert np.abs(pixels - EXPECTED["pixels"]).max() <= 1e-5
    assert np.abs(imaging.normalize(crops) - EXPECTED["pixels"]).max() <= 1e-5


LAYOUTS = [
    (TINY_BIRDER, "projection", "birder"),
    (TINY_OPEN_CLIP, "projection_no_bias", "open_clip"),
    (TINY_HF, "projection_no_bias", "hf"),
    (TINY_HF / "model.safetensors", "projection_no_bias", "hf"),
]


@pytest.mark.parametrize(
    "weights,proj_key,layout", LAYOUTS, ids=["birder", "open_clip", "hf-folder", "hf-file"]
)
def test_outputs_match_reference(weights, proj_key, layout):
    enc = load_encoder(weights, device="cpu", dtype="fp32")
    assert enc.identity["layout"] == layout
    assert (enc.dim, enc.width, enc.dtype, enc.device.type) == (32, 128, "fp32", "cpu")
    out = enc.embed(IMAGES, features=True, batch_size=5)
    assert out.projection.shape == (N, 32) and out.features.shape == (N, 128, 16, 16)
    assert out.projection.dtype == out.embedding.dtype == out.features.dtype == np.float32
    assert np.abs(out.projection - normalized(EXPECTED[proj_key])).max() <= TOL
    assert np.allclose(np.linalg.norm(out.projection, axis=1), 1.0, atol=1e-6)
    assert np.abs(out.embedding - EXPECTED["embedding"]).max() <= TOL
    assert np.abs(out.features - EXPECTED["features"]).max() <= TOL
    # The raw (unnormalized) projection too: with the bias for Birder, without for the others.
    with torch.inference_mode():
        raw = enc.model.proj(torch.from_numpy(out.embedding)).numpy()
    assert np.abs(raw - EXPECTED[proj_key]).max() <= TOL
    assert out.paths == [str(p) for p in IMAGES]


def test_birder_projection_bias_is_used(birder):
    out = birder.encode_pixels(EXPECTED["pixels"][:4])
    assert np.abs(out["projection"] - EXPECTED["projection_normalized"][:4]).max() <= TOL
    assert np.abs(out["features"] - EXPECTED["features"][:4]).max() <= TOL
    assert "bias" in birder.identity["architecture"]
    # The bias matters in this fixture: the no-bias projection is measurably different.
    nb = normalized(EXPECTED["projection_no_bias"][:4])
    assert np.abs(out["projection"] - nb).max() > 100 * TOL


def test_uint8_path_equals_float_path(birder, crops):
    via_uint8 = birder.encode_uint8(crops)
    via_tensor = birder.encode_uint8(torch.from_numpy(crops))
    via_float = birder.encode_pixels(imaging.normalize(crops), features=False)
    assert set(via_float) == {"projection", "embedding"}
    assert via_uint8.shape == (N, 32) and via_uint8.dtype == np.float32
    assert np.abs(via_uint8 - via_float["projection"]).max() <= 1e-5
    assert np.array_equal(via_uint8, via_tensor)
    assert np.abs(via_uint8 - EXPECTED["projection_normalized"]).max() <= TOL
    with pytest.raises(ValueError, match="uint8"):
        birder.encode_uint8(crops.astype(np.float32))


def test_embed_accepts_pil_images_and_saves_npz(birder, tmp_path):
    pil = [imaging.open_image(p)[0] for p in IMAGES[:3]]
    out = birder.embed([pil[0], IMAGES[1], pil[2]], batch_size=2)
    assert out.features is None and out.paths == ["<image 0>", str(IMAGES[1]), "<image 2>"]
    assert np.abs(out.projection - EXPECTED["projection_normalized"][:3]).max() <= TOL
    saved = np.load(out.save(tmp_path / "e.npz"))
    assert sorted(saved.files) == ["embedding", "paths", "projection"]
    assert list(saved["paths"]) == out.paths
    assert np.array_equal(saved["projection"], out.projection)
    full = birder.embed(IMAGES[:2], features=True)
    assert "features" in np.load(full.save(tmp_path / "f.npz")).files
    empty = birder.embed([], features=True)
    assert empty.projection.shape == (0, 32) and empty.features.shape == (0, 128, 16, 16)


def test_embed_raises_image_error_for_unreadable_files(birder, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(imaging.ImageError, match="bad.jpg"):
        birder.embed([IMAGES[0], bad])


def test_bf16_is_close_to_fp32_and_equals_autocast(birder, crops):
    enc = load_encoder(TINY_BIRDER, device="cpu", dtype="bf16")
    assert enc.dtype == "bf16" and enc.model.blocks[0].fc1.weight.dtype == torch.bfloat16
    assert enc.model.norm.weight.dtype == torch.float32  # LayerNorms stay fp32
    got = enc.encode_uint8(crops)
    cos = (got * EXPECTED["projection_normalized"]).sum(axis=1)
    assert cos.min() > 0.99 and got.dtype == np.float32
    # bf16 weights give the numbers autocast gives with the fp32 weights (it casts the same).
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = birder.model(torch.from_numpy(crops))["projection"].numpy()
    assert np.abs(got - ref).max() <= 1e-6
    out = enc.encode_pixels(EXPECTED["pixels"][:2])
    assert all(v.dtype == np.float32 for v in out.values())


def test_model_accepts_uint8_nhwc_and_float_nchw(birder, crops):
    x = torch.from_numpy(crops[:2])
    with torch.inference_mode():
        a = birder.model(x)["projection"]
        b = birder.model(torch.from_numpy(imaging.normalize(crops[:2])))["projection"]
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        birder.model(x.permute(0, 3, 1, 2).contiguous())


def test_identity_names_weights_architecture_preprocess(birder):
    import hashlib

    ident = birder.identity
    assert ident["weights_sha256"] == hashlib.sha256(TINY_BIRDER.read_bytes()).hexdigest()
    assert ident["architecture"] == "clip-vit w128 l2 h2 m512 p14 i224 proj32 bias"
    assert ident["preprocess"] == imaging.PREPROCESS_VERSION and ident["dim"] == 32
    assert birder.weights_path == TINY_BIRDER


@pytest.mark.parametrize(
    "device", ["tpu", "mps", "cuda:99" if torch.cuda.is_available() else "cuda"]
)
def test_unknown_or_missing_device_is_refused(device):
    with pytest.raises(DeviceError, match="device"):
        load_encoder(TINY_BIRDER, device=device)


def test_unknown_dtype_is_refused():
    with pytest.raises(DeviceError, match="dtype"):
        load_encoder(TINY_BIRDER, device="cpu", dtype="fp8")


def test_auto_device_and_dtype():
    enc = load_encoder(TINY_OPEN_CLIP)
    assert enc.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert enc.dtype in ("fp32", "bf16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(crops):
    gpu = load_encoder(TINY_BIRDER, device="cuda", dtype="fp32")
    got = gpu.encode_uint8(crops)
    assert np.abs(got - EXPECTED["projection_normalized"]).max() <= 1e-3
    bf16 = load_encoder(TINY_BIRDER, device="cuda", dtype="bf16").encode_uint8(crops)
    assert (bf16 * EXPECTED["projection_normalized"]).sum(axis=1).min() > 0.99


def test_embeddings_dataclass_defaults():
    e = Embeddings(np.zeros((1, 2), np.float32), np.zeros((1, 3), np.float32))
    assert e.features is None and e.paths == [] and "features" not in e.arrays()


def test_pil_rgba_and_palette_inputs_go_through_the_contract(birder):
    rgba = Image.new("RGBA", (300, 200), (10, 200, 30, 0))
    out = birder.embed([rgba])
    ref = birder.encode_pixels(imaging.preprocess(rgba)[None])["projection"]
    assert np.abs(out.projection - ref).max() <= 1e-6
