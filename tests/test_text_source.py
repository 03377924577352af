"""Where a text query's tower comes from and whether it is the index's CLIP: the default
download (pinned sha256, a one-line offline message within seconds, a wrong file refused and
kept) and the source-model check (the fingerprint of the image projection beside the text
tower against the index's), through `index search` as a user runs it. Never calls a hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from indexer.encoder import ViTConfig, save_random_checkpoint
from indexer.encoder.weights import TEXT
from tests.conftest import FIXTURE_DIR, ROOT, TINY_BIRDER

TEXT_FIXTURES = FIXTURE_DIR / "clip-text-tiny"
FULL_CLIP = TEXT_FIXTURES / "tiny_clip_open_clip.safetensors"  # both towers, open_clip keys
HF_CLIP = TEXT_FIXTURES / "tiny_clip_hf"  # the same CLIP as a Hugging Face CLIPModel folder
IMAGES = FIXTURE_DIR / "clip-vit-tiny" / "images"
EXPECTED = dict(np.load(TEXT_FIXTURES / "tiny_text_expected.npz"))
PROMPT = 1  # its top scores are well apart


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No PHOTO_INDEX_*, hub or proxy settings of the machine running the tests; an empty hub
    cache of our own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHOTO_INDEX_", "HF_", "HUGGINGFACE_")) and "proxy" not in k.lower()
    }
    env |= {"HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT)}
    env |= {"PHOTO_INDEX_DEVICE": "cpu", "PHOTO_INDEX_DTYPE": "fp32", **extra}
    return env


def cli(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "indexer.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.fixture
def here(monkeypatch):
    """`index ARGS...` in this process (no interpreter to start): CPU, fp32, the hub off, no
    PHOTO_INDEX_* of the machine running the tests."""
    from tests.conftest import invoke

    for key in [k for k in os.environ if k.startswith("PHOTO_INDEX_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    monkeypatch.setenv("PHOTO_INDEX_DTYPE", "fp32")
    return invoke


def build_index(index: Path, weights: Path, images: list[Path] | None = None) -> None:
    from indexer.build import build
    from indexer.settings import Settings

    settings = Settings.from_env(
        env={}, index=index, weights=str(weights), workers=1, device="cpu", dtype="fp32"
    )
    assert build(images or [IMAGES], settings).failed == 0


@pytest.fixture(scope="module")
def birder_index(tmp_path_factory) -> Path:
    """The clip-vit-tiny images indexed with the image-only Birder checkpoint."""
    index = tmp_path_factory.mktemp("birder") / "index"
    build_index(index, TINY_BIRDER)
    return index


@pytest.fixture(scope="module")
def wide_index(tmp_path_factory) -> Path:
    """An index of 768-d vectors (the default text tower's width) from an image-only file."""
    folder = tmp_path_factory.mktemp("wide")
    cfg = ViTConfig(width=64, layers=1, heads=1, mlp=128, proj_dim=768)
    weights = save_random_checkpoint(folder / "wide_vit.safetensors", cfg)
    build_index(folder / "index", weights, [IMAGES / "bee.jpg"])
    return folder / "index"


def variant(tmp_path: Path, name: str, change) -> Path:
    """A copy of the tiny full CLIP with `change(tensors)` applied."""
    tensors = load_file(FULL_CLIP)
    change(tensors)
    out = tmp_path / name
    save_file(tensors, out)
    return out


# --- the default download ------------------------------------------------------------------
def assert_says_where_to_get_the_text_weights(stderr: str, why: str) -> None:
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert stderr.startswith(
        "error: The default ViT-L/14 text weights are not downloaded and the hub cannot be reached"
    )
    assert why in stderr and TEXT.url in stderr and "model.safetensors (1.7 GB)" in stderr
    assert "--text-weights PATH" in stderr and "PHOTO_INDEX_TEXT_WEIGHTS" in stderr
    assert TEXT.url == (
        "https://huggingface.co/openai/clip-vit-large-patch14/resolve/"
        "32bd64288804d66eefd0ccbe215aa642df71cc41/model.safetensors"
    )


def test_offline_default_text_weights_say_where_to_get_them_at_once(
    here, wide_index, tmp_path, monkeypatch
):
    monkeypatch.setenv("PHOTO_INDEX_CACHE_DIR", str(tmp_path / "empty-cache"))
    result = here("search", "a bee", "--index", wide_index)
    assert result.exit_code == 1 and result.stdout == ""
    assert "Retrying" not in result.stderr  # the hub client's retries were skipped
    assert_says_where_to_get_the_text_weights(result.stderr, "HF_HUB_OFFLINE is set")


def test_an_unreachable_hub_is_told_within_seconds(wide_index, tmp_path):
    """Nothing listens on 127.0.0.1:9: the probe says so (how fast: bench/startup.py)."""
    env = clean_env(tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    result = cli(env, "search", "a bee", "--index", wide_index)
    assert result.returncode == 1 and result.stdout == ""
    assert "Retrying" not in result.stderr and "Traceback" not in result.stderr
    assert_says_where_to_get_the_text_weights(result.stderr, "127.0.0.1: ")


def test_a_cached_default_text_file_with_another_sha256_is_refused_and_kept(
    here, wide_index, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    snapshot = cache / "models--openai--clip-vit-large-patch14" / "snapshots" / TEXT.revision
    snapshot.mkdir(parents=True)
    planted = snapshot / TEXT.filename
    shutil.copy(FULL_CLIP, planted)  # a readable CLIP, but not the pinned file
    monkeypatch.setenv("PHOTO_INDEX_CACHE_DIR", str(cache))
    result = here("search", "a bee", "--index", wide_index)
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {planted}: sha256 is ")
    assert f"expected {TEXT.sha256} (checksum mismatch)" in result.stderr
    assert "nothing was deleted" in result.stderr and "--text-weights PATH" in result.stderr
    assert planted.read_bytes() == FULL_CLIP.read_bytes()
    assert sorted(os.listdir(snapshot)) == [TEXT.filename]  # no marker of a success


def test_an_index_of_another_width_is_not_offered_the_default(here, birder_index):
    result = here("search", "a cat", "--index", birder_index)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: text search needs a CLIP text tower: pass --text-weights PATH (a full-CLIP "
        "checkpoint: OpenAI ViT-L-14.pt, an open_clip state dict, or a Hugging Face CLIPModel "
        "folder); the default, OpenAI's ViT-L/14, projects to 768 dimensions and this index "
        "holds 32\n"
    )


# --- the source-model check ----------------------------------------------------------------
def test_the_same_clip_in_any_layout_or_precision_is_accepted(here, birder_index, tmp_path):
    """The Birder index (image projection with its bias) and the full CLIP's text tower: the
    reference `image_text_cosine_with_bias` ranking, whatever file holds that CLIP."""
    fp16 = tmp_path / "clip_fp16.safetensors"
    save_file({k: v.astype(np.float16) for k, v in load_file(FULL_CLIP).items()}, fp16)
    scores = EXPECTED["image_text_cosine_with_bias"][:, PROMPT]
    order = np.argsort(-scores)
    names = [str(EXPECTED["image_names"][i]) for i in order]
    prompt = str(EXPECTED["prompts"][PROMPT])
    for weights in (FULL_CLIP, HF_CLIP, fp16):
        args = ("--index", birder_index, "--json", "--text-weights", weights)
        result = here("search", prompt, *args)
        assert result.exit_code == 0 and result.stderr == "", (weights, result.stderr)
        hits = json.loads(result.stdout)
        assert [Path(h["path"]).name for h in hits[:3]] == names[:3]
        if weights != fp16:
            np.testing.assert_allclose([h["score"] for h in hits], scores[order][:10], atol=1e-4)


def test_a_text_tower_of_another_clip_is_refused_in_one_line(here, birder_index, tmp_path):
    def other_image_projection(tensors: dict) -> None:
        rng = np.random.default_rng(7)
        proj = tensors["visual.proj"]
        tensors["visual.proj"] = rng.standard_normal(proj.shape).astype(proj.dtype)

    other = variant(tmp_path, "other_clip.safetensors", other_image_projection)
    result = here("search", "a cat", "--index", birder_index, "--text-weights", other)
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        f"error: {other}: this text tower belongs to another CLIP than the index at "
        f"{birder_index} was built with (the image projection beside it is not that of the "
        "index's encoder, "
    )
    assert result.stderr.endswith(
        "pass --text-weights with the full CLIP of the build's image weights\n"
    )


def test_a_text_only_file_of_the_right_width_is_used_with_a_note(here, birder_index, tmp_path):
    def drop_image_tower(tensors: dict) -> None:
        for key in [k for k in tensors if k.startswith("visual.")]:
            del tensors[key]

    text_only = variant(tmp_path, "text_only.safetensors", drop_image_tower)
    result = here("search", "a cat", "--index", birder_index, "--text-weights", text_only)
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 10
    assert result.stderr == (
        f"note: {text_only}: not checked to be the CLIP the index was built with (the file has "
        "no image tower to compare); its width matches\n"
    )


def test_an_index_from_before_fingerprints_gets_a_note_until_the_next_build(
    here, birder_index, tmp_path
):
    from indexer.store.catalog import Catalog

    index = tmp_path / "old"
    shutil.copytree(birder_index, index)
    cat = Catalog(index)
    pinned = cat.get_meta("encoder")
    assert len(pinned.pop("image_fingerprint")) == 16  # what a build records
    with cat.session() as session:
        Catalog.set_meta(session, "encoder", pinned)
    cat.close()
    search = ("search", "a cat", "--index", index, "--text-weights", FULL_CLIP)
    before = here(*search)
    assert before.exit_code == 0 and len(before.stdout.splitlines()) == 10
    assert before.stderr == (
        f"note: {FULL_CLIP}: not checked to be the CLIP the index was built with (the index "
        "was built before encoder fingerprints were recorded; a build records it); its width "
        "matches\n"
    )
    build_index(index, TINY_BIRDER)  # nothing new to embed: it records the fingerprint
    after = here(*search)
    assert after.exit_code == 0 and after.stderr == ""
