"""The CLIP text tower against the open_clip / transformers references of the tiny fixture:
both checkpoint layouts, the image-text cosines with the same file's image tower, bad files."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import torchscript_clip
from safetensors.torch import load_file, save_file

from indexer.encoder import CheckpointError, load_encoder
from indexer.encoder.text_encoder import load_text_encoder
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


def test_one_prompt_at_a_time_gives_the_reference(text_encoder, expected):
    """Alone, a prompt runs only up to its end-of-text token (not the batch's longest, not 77):
    the same projections, whatever its length and padding."""
    lengths = set()
    for padding in ("input_ids", "input_ids_eot_padded"):
        for i, ids in enumerate(expected[padding]):
            got = text_encoder.encode_ids(ids[None])[0]
            np.testing.assert_allclose(got, expected["projection_normalized"][i], atol=1e-4)
            lengths.add(int(ids.argmax()) + 1)
    assert min(lengths) <= 3 and max(lengths) == 77


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
    reference = expected["image_text_cosine"]
    np.testing.assert_allclose(cosine, reference, atol=1e-4, rtol=0)
    # each picture's best prompt is one of the reference's best: prompts that tokenize alike
    # ('' and '   \t\n  ') tie exactly, and a tie's argmax is any of them
    best = reference >= reference.max(axis=1, keepdims=True) - 2e-4
    assert best[np.arange(len(cosine)), cosine.argmax(1)].all()
    for key in ("weights_sha256", "dim", "image_fingerprint"):
        assert images.identity[key] == text_encoder.identity[key]


def test_identity_names_the_file_width_and_layout(layout, text_encoder):
    weights = OPEN_CLIP if layout == "open_clip" else HF / "model.safetensors"
    identity = dict(text_encoder.identity)
    assert len(identity.pop("image_fingerprint")) == 16  # the image projection beside it
    assert identity == {
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


def test_text_only_hf_folder_and_torch_state_dict_give_the_same_features(tmp_path, expected):
    """A CLIPTextModelWithProjection folder (text keys only, flat config) and an OpenAI state
    dict saved with torch.save read as the fixture's layouts do."""
    folder = tmp_path / "text-only"
    folder.mkdir()
    tensors = load_file(str(HF / "model.safetensors"))
    text = {k: v for k, v in tensors.items() if k.startswith(("text_model.", "text_projection"))}
    save_file(text, str(folder / "model.safetensors"))
    config = json.loads((HF / "config.json").read_text())["text_config"]
    config["model_type"] = "clip_text_model"
    (folder / "config.json").write_text(json.dumps(config))
    state_dict = tmp_path / "ViT-tiny.pt"
    torch.save(load_file(str(OPEN_CLIP)), state_dict)
    for path, layout in ((folder, "hf"), (state_dict, "open_clip")):
        encoder = load_text_encoder(path, device="cpu", dtype="fp32")
        assert encoder.identity["layout"] == layout
        got = encoder.encode_ids(expected["input_ids"])
        np.testing.assert_allclose(got, expected["projection_normalized"], atol=1e-4, rtol=0)


def test_hf_config_that_contradicts_the_weights_is_refused(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    os.symlink(HF / "model.safetensors", folder / "model.safetensors")
    config = json.loads((HF / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="num_hidden_layers=3 but the weights have 2"):
        load_text_encoder(folder, device="cpu", dtype="fp32")


def test_torchscript_archive_gives_both_towers(tmp_path, expected):
    """OpenAI's ViT-L-14.pt is a TorchScript archive of the whole CLIP in fp16: a tiny one."""
    half = {k: v.half() for k, v in load_file(str(OPEN_CLIP)).items()}

    scalars = {n: torch.tensor(77) for n in ("input_resolution", "context_length", "vocab_size")}
    archive = torchscript_clip(tmp_path / "ViT-L-14.pt", half, scalars)
    text = load_text_encoder(archive, device="cpu", dtype="fp32")
    assert text.identity["layout"] == "torchscript"
    assert load_encoder(archive, device="cpu", dtype="fp32").identity["dim"] == 32
    rounded = tmp_path / "rounded.safetensors"
    save_file({k: v.float() for k, v in half.items()}, str(rounded))
    same = load_text_encoder(rounded, device="cpu", dtype="fp32")
    ids = expected["input_ids"]
    np.testing.assert_allclose(text.encode_ids(ids), same.encode_ids(ids), atol=1e-6, rtol=0)
    close = text.encode_ids(ids) @ expected["projection_normalized"].T
    assert np.diag(close).min() > 0.999  # fp16 rounding of random weights only


def test_our_tokenizer_and_text_tower_give_the_reference_from_the_prompts(expected):
    """End to end from text: the prompts through our tokenizer, then our text tower, give the
    reference projections (the two halves built apart agree with open_clip together)."""
    from indexer.encoder.tokenizer import load_tokenizer

    encoder = load_text_encoder(
        TEXT / "tiny_clip_open_clip.safetensors", device="cpu", dtype="fp32"
    )
    ids = load_tokenizer().tokenize([str(p) for p in expected["prompts"]])
    assert np.array_equal(ids, expected["input_ids"])
    got = encoder.encode_ids(ids)
    assert np.abs(got - expected["projection_normalized"]).max() < 1e-4
