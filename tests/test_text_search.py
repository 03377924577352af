"""Text queries end to end: `index search WORDS` over an index of the clip-vit-tiny images built
with the full tiny CLIP gives the reference image-text ranking; image-only weights are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURE_DIR, ROOT, TINY_BIRDER

FULL_CLIP = FIXTURE_DIR / "clip-text-tiny" / "tiny_clip_open_clip.safetensors"
IMAGES = FIXTURE_DIR / "clip-vit-tiny" / "images"
EXPECTED = dict(np.load(FIXTURE_DIR / "clip-text-tiny" / "tiny_text_expected.npz"))
PROMPT = 1  # "A Photo Of A Dog Running On The Beach.": its top scores are ≥ 0.03 apart
ENV = {**os.environ, "PHOTO_INDEX_DEVICE": "cpu", "PHOTO_INDEX_DTYPE": "fp32"}
ENV.pop("PHOTO_INDEX_TEXT_WEIGHTS", None)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "indexer.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)


def build_index(index: Path, weights: Path) -> None:
    from indexer.build import build
    from indexer.settings import Settings

    settings = Settings.from_env(
        env={}, index=index, weights=str(weights), workers=1, device="cpu", dtype="fp32"
    )
    summary = build([IMAGES], settings)
    assert summary.failed == 0


@pytest.fixture(scope="module")
def clip_index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("text") / "index"
    build_index(index, FULL_CLIP)
    return index


def reference_ranking() -> tuple[list[str], np.ndarray]:
    scores = EXPECTED["image_text_cosine"][:, PROMPT]
    order = np.argsort(-scores)
    return [str(EXPECTED["image_names"][i]) for i in order], scores[order]


def test_text_query_ranks_images_as_the_reference(clip_index):
    names, scores = reference_ranking()
    result = cli("search", str(EXPECTED["prompts"][PROMPT]), "--index", clip_index, "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert [Path(h["path"]).name for h in hits[:5]] == names[:5]
    np.testing.assert_allclose([h["score"] for h in hits], scores[:10], atol=1e-4, rtol=0)


def test_words_as_separate_arguments_and_paths_only(clip_index):
    names, _ = reference_ranking()
    words = str(EXPECTED["prompts"][PROMPT]).split()
    result = cli("search", *words, "--index", clip_index, "--paths-only", "-k", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [str(IMAGES.absolute() / n) for n in names[:3]]


def test_text_flag_forces_text_even_when_a_file_has_that_name(clip_index):
    image = IMAGES / "bee.jpg"
    as_image = cli("search", image, "--index", clip_index, "--json", "-k", "1")
    assert json.loads(as_image.stdout)[0]["path"] == str(image.absolute())
    as_text = cli("search", "--text", image, "--index", clip_index, "--json", "-k", "13")
    assert as_text.returncode == 0, as_text.stderr
    assert json.loads(as_text.stdout)[0]["score"] < 0.99  # not the picture's own vector


def test_a_missing_picture_says_no_such_file(clip_index, tmp_path):
    missing = tmp_path / "a cat"  # forced by --image
    result = cli("search", "--image", missing, "--index", clip_index)
    assert result.returncode == 1
    assert result.stderr == f"error: {missing}: no such file\n"
    typo = cli("search", "nope.jpg", "--index", clip_index)  # one word with an extension
    assert typo.returncode == 1
    assert typo.stderr == "error: nope.jpg: no such file\n"


def test_image_only_weights_ask_for_text_weights(tmp_path):
    index = tmp_path / "index"
    build_index(index, TINY_BIRDER)
    result = cli("search", "a photo of a cat", "--index", index)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(
        "error: text search needs a CLIP text tower: pass --text-weights"
    )
    assert len(result.stderr.splitlines()) == 1
    # with --text-weights it answers (the tiny CLIP's text tower has the index's width, 32)
    given = cli("search", "a photo of a cat", "--index", index, "--text-weights", FULL_CLIP)
    assert given.returncode == 0, given.stderr
    assert len(given.stdout.splitlines()) == 10


def test_a_text_tower_of_another_width_is_refused(clip_index, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(FULL_CLIP)
    tensors["text_projection"] = np.ascontiguousarray(tensors["text_projection"][:, :16])
    narrow = tmp_path / "narrow_clip.safetensors"
    save_file(tensors, narrow)
    result = cli("search", "a cat", "--index", clip_index, "--text-weights", narrow)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"error: the text tower projects to 16 dimensions but the index at {clip_index} "
        "holds 32: use the same CLIP as the build\n"
    )
