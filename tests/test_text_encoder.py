"""The CLIP text tower against the open_clip / transformers references of the tiny fixture:
both checkpoint layouts, the image-text cosines with the same file's image tower, bad files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from indexer.encoder import CheckpointError, load_encoder
from indexer.encoder.text import load_text_encoder
from indexer.files import sha256_file

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXT = FIXTURES / "clip-text-tiny"
OPEN_CLIP = TEXT / "tiny_clip_open_clip.safetensors"
HF = TEXT / "tiny_clip_hf"
LAYOUTS = {"open_clip": OPEN_CLIP, "hf": HF}


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(TEXT / "tiny_text_expected.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def layout(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def text_encoder(layout):
    return load_text_encoder(LAYOUTS[layout], device="cpu", dtype="fp32")


@pytest.mark.parametrize("padding", ["input_ids", "input_ids_eot_padded"])
def test_layouts_give_the_reference_features(text_encoder, expected, padding):
    """open_clip's zero padding and HF's EOT padding: pooled, projection, normalized to 1e-4."""
    out = text_encoder.encode(expected[padding])
    np.testing.assert_allclose(out["pooled"], expected["pooled"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["features"], expected["projection"], atol=1e-4, rtol=0)
    got = text_encoder.encode_ids(expected[padding])
    assert got.dtype == np.float32 and got.shape == (44, 32)
    np.testing.assert_allclose(got, expected["projection_normalized"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_prompt_with_text_after_the_first_eot_pools_at_the_first(text_encoder, expected):
    """Prompt 41 has ids after its first 49407: the pooled token is the first (argmax)."""
    ids = expected["input_ids"][41:42]
    assert (ids[0] == 49407).sum() > 1 and (ids[0, expected["eot_index"][41] + 1 :] != 0).any()
    np.testing.assert_allclose(
        text_encoder.encode(ids)["pooled"][0], expected["pooled"][41], atol=1e-4, rtol=0
    )


def test_image_text_cosines_match_the_reference(layout, text_encoder, expected):
    """The same full-CLIP file gives both towers; their cosines are the reference's."""
    images = load_encoder(LAYOUTS[layout], device="cpu", dtype="fp32")
    paths = [FIXTURES / "clip-vit-tiny" / "images" / n for n in expected["image_names"]]
    image = images.embed(paths).projection
    cosine = image @ text_encoder.encode_ids(expected["input_ids"]).T
    np.testing.assert_allclose(cosine, expected["image_text_cosine"], atol=1e-4, rtol=0)
    assert (cosine.argmax(1) == expected["image_text_cosine"].argmax(1)).all()
    same = images.identity["weights_sha256"] == text_encoder.identity["weights_sha256"]
    assert same and images.identity["dim"] == text_encoder.identity["dim"]


def test_identity_names_the_file_width_and_layout(layout, text_encoder):
    weights = OPEN_CLIP if layout == "open_clip" else HF / "model.safetensors"
    assert text_encoder.identity == {
        "weights_sha256": sha256_file(weights),
        "architecture": "clip-text w64 l2 h1 m256 c77 v49408 proj32",
        "dim": 32,
        "layout": layout,
    }


def test_bad_token_ids_are_refused(text_encoder):
    with pytest.raises(ValueError, match=r"\[N, 77\]"):
        text_encoder.encode_ids(np.zeros((2, 76), np.int64))
    with pytest.raises(ValueError, match="integers"):
        text_encoder.encode_ids(np.zeros((2, 77), np.float32))
    with pytest.raises(ValueError, match="49408"):
        text_encoder.encode_ids(np.full((1, 77), 49408, np.int64))
    assert text_encoder.encode_ids(np.zeros((0, 77), np.int64)).shape == (0, 32)


def _one_line_error(path: Path, *words: str) -> str:
    with pytest.raises(CheckpointError) as info:
        load_text_encoder(path, device="cpu", dtype="fp32")
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message
    return message


def test_truncated_file_is_one_clear_error(tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(OPEN_CLIP.read_bytes()[: OPEN_CLIP.stat().st_size // 2])
    _one_line_error(cut, "truncated or corrupt")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, value):
    tensors = load_file(str(OPEN_CLIP))
    tensors["transformer.resblocks.1.mlp.c_fc.weight"][3, 5] = value
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad))
    what = "NaN" if value != value else "Inf"
    _one_line_error(bad, "not finite", "transformer.resblocks.1.mlp.c_fc.weight", what)


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(_one_line_error(fifo, "not a regular")))
    worker.start()
    worker.join(20)
    assert not worker.is_alive() and result


def test_image_only_checkpoint_says_it_has_no_text_tower():
    _one_line_error(FIXTURES / "clip-vit-tiny" / "tiny_open_clip.safetensors", "no CLIP text tower")


def test_missing_and_misshapen_keys_are_named(tmp_path):
    tensors = load_file(str(OPEN_CLIP))
    del tensors["ln_final.bias"]
    missing = tmp_path / "missing.safetensors"
    save_file(tensors, str(missing))
    _one_line_error(missing, "missing keys", "ln_final.bias")
    tensors = load_file(str(OPEN_CLIP))
    tensors["ln_final.bias"] = torch.zeros(63)
    wrong = tmp_path / "wrong.safetensors"
    save_file(tensors, str(wrong))
    _one_line_error(wrong, "wrong shape", "ln_final.bias")
