"""Text queries end to end: `index search WORDS` over an index of the clip-vit-tiny images built
with the full tiny CLIP gives the reference image-text ranking; image-only weights are refused."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import APP, FIXTURE_DIR, ROOT, TINY_BIRDER, invoke, normalized

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


@pytest.fixture(scope="module")
def birder_index(tmp_path_factory) -> Path:
    """The same images indexed with the image-only Birder weights (no text tower)."""
    index = tmp_path_factory.mktemp("birder") / "index"
    build_index(index, TINY_BIRDER)
    return index


def test_image_only_weights_ask_for_text_weights(birder_index):
    index = birder_index
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


# --- combined queries: `+` between terms, --minus, images and words together -------------------
IMAGE_VECTORS = normalized(
    dict(np.load(FIXTURE_DIR / "clip-vit-tiny" / "tiny_expected.npz"))["projection_no_bias"]
)
TEXT_VECTORS = EXPECTED["projection_normalized"]


def words(prompt: int) -> list[str]:
    return str(EXPECTED["prompts"][prompt]).split()


def expected_ranking(vector: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Names and scores, best first, of the reference images against a query vector."""
    scores = IMAGE_VECTORS @ (vector / np.linalg.norm(vector))
    order = np.argsort(-scores)
    return [str(EXPECTED["image_names"][i]) for i in order], scores[order]


@pytest.fixture
def index_cmd(monkeypatch):
    """`index ARGS...` in this process (fast), on the CPU in fp32 as `cli` runs it."""
    for name in ("PHOTO_INDEX_DEVICE", "PHOTO_INDEX_DTYPE", "PHOTO_INDEX_TEXT_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    monkeypatch.setenv("PHOTO_INDEX_DTYPE", "fp32")
    return invoke


def search_json(index_cmd, index: Path, *args: str | Path) -> list[dict]:
    result = index_cmd("search", *args, "--index", index, "--json", "-k", "13")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_ranked(hits: list[dict], vector: np.ndarray) -> None:
    """The hits are the reference images ranked by cosine with `vector` (every gap ≥ 4e-4)."""
    names, scores = expected_ranking(vector)
    assert [Path(h["path"]).name for h in hits] == names
    np.testing.assert_allclose([h["score"] for h in hits], scores, atol=1e-4, rtol=0)


def test_plus_separates_texts_and_scores_their_normalized_sum(index_cmd, clip_index):
    hits = search_json(index_cmd, clip_index, *words(0), "+", *words(2))
    assert_ranked(hits, TEXT_VECTORS[0] + TEXT_VECTORS[2])
    joined = search_json(
        index_cmd, clip_index, *words(0), *words(2)
    )  # no `+`: one text of all the words
    assert [h["score"] for h in joined] != [h["score"] for h in hits]


def test_minus_subtracts_and_changes_the_ranking(index_cmd, clip_index):
    alone = search_json(index_cmd, clip_index, *words(1))
    less = search_json(index_cmd, clip_index, *words(1), "--minus", str(EXPECTED["prompts"][0]))
    assert_ranked(less, TEXT_VECTORS[1] - TEXT_VECTORS[0])
    assert Path(alone[0]["path"]).name == "cat-exif-rotated.jpg"
    assert Path(less[0]["path"]).name == "chess-knight.tiff"  # the cat was what was taken away


def test_a_picture_and_words_combine(index_cmd, clip_index):
    books = IMAGES / "books.jpg"
    expected = IMAGE_VECTORS[3] + TEXT_VECTORS[1]
    assert_ranked(search_json(index_cmd, clip_index, books, "+", *words(1)), expected)
    assert_ranked(
        search_json(index_cmd, clip_index, books, *words(1)), expected
    )  # a file ends a text
    both = search_json(index_cmd, clip_index, books, "--minus", IMAGES / "bee.jpg")
    assert_ranked(both, IMAGE_VECTORS[3] - IMAGE_VECTORS[0])
    paths = index_cmd(
        "search", books, "+", "a", "cat", "--index", clip_index, "--paths-only", "-k", "2"
    )
    assert paths.exit_code == 0, paths.output
    assert paths.stdout.splitlines() == [
        h["path"] for h in search_json(index_cmd, clip_index, books, "+", "a", "cat")[:2]
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the query is empty: give words or a picture to search for"),
        (
            ["--minus", "a cat"],
            "nothing to search for: --minus only subtracts; add words or a picture too",
        ),
        (["a", "cat", "+"], "`+` needs words or a picture on each side"),
        (["red", "+", "+", "car"], "`+` needs words or a picture on each side"),
        (
            ["a cat", "--minus", "a cat"],
            "the query's terms cancel out: nothing is left to search for",
        ),
        (["a", "cat", "--minus", "gone.jpg"], "gone.jpg: no such file"),
        (["--image", "a", "cat"], "a: no such file"),
    ],
)
def test_combined_queries_refused_in_one_line(index_cmd, clip_index, args, message):
    result = index_cmd("search", *args, "--index", clip_index)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"error: {message}\n"


# --- the Search page's words box (Streamlit AppTest, real searches through the library) --------
def search_page(monkeypatch, index: Path, weights: Path) -> AppTest:
    """The app on `index` as `index serve` starts it, CPU and fp32, no text weights set."""
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(index))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(weights))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    monkeypatch.setenv("PHOTO_INDEX_DTYPE", "fp32")
    monkeypatch.delenv("PHOTO_INDEX_TEXT_WEIGHTS", raising=False)
    return AppTest.from_file(APP, default_timeout=60).run()


def cards(at: AppTest) -> list[tuple[str, float]]:
    """(file name, score) of each result card, best first."""
    found = []
    for m in at.markdown:
        if m.value.startswith("**#"):
            _, score, name = m.value.split(" · ", 2)
            found.append((name.strip("`"), float(score)))
    return found


def test_the_search_page_ranks_typed_words_as_the_reference(monkeypatch, clip_index):
    names, scores = reference_ranking()
    at = search_page(monkeypatch, clip_index, FULL_CLIP)
    at.text_input(key="words").input(str(EXPECTED["prompts"][PROMPT])).run()
    assert not at.exception and not at.error
    found = cards(at)
    assert [name for name, _ in found[:5]] == names[:5]
    np.testing.assert_allclose([s for _, s in found], scores[:12], atol=2e-4, rtol=0)
    assert f"**Query:** `{EXPECTED['prompts'][PROMPT]}`" in [m.value for m in at.markdown]
    at.sidebar.slider(key="size").set_value((0.0, 0.1)).run()  # the same filters apply
    small = [n for n in names if (IMAGES / n).stat().st_size <= math.ceil(0.1 * 1024 * 1024)]
    assert [name for name, _ in cards(at)] == small[:12] and len(small) < len(names)
    at.sidebar.slider(key="k").set_value(3).run()
    assert [name for name, _ in cards(at)] == small[:3]
    at.text_input(key="words").input("").run()  # clearing the box drops the text query
    assert not cards(at) and "13 pictures indexed" in at.caption[0].value


def test_more_like_this_from_a_text_result(monkeypatch, clip_index):
    at = search_page(monkeypatch, clip_index, FULL_CLIP)
    at.text_input(key="words").input(str(EXPECTED["prompts"][PROMPT])).run()
    second = cards(at)[1][0]
    at.button(key="more-2").click().run()
    assert not at.exception and not at.error
    row = [str(n) for n in EXPECTED["image_names"]].index(second)
    names, scores = expected_ranking(IMAGE_VECTORS[row])  # the picture's own vector
    found = cards(at)
    assert found[0] == (second, 1.0) and [name for name, _ in found[:5]] == names[:5]
    np.testing.assert_allclose([s for _, s in found], scores[:12], atol=2e-4, rtol=0)
    assert f"**Query:** `{second}`" in [m.value for m in at.markdown]
    at.text_input(key="words").input("").run()  # the picture's query stays
    assert cards(at) == found


def test_the_search_page_asks_for_text_weights(monkeypatch, birder_index):
    at = search_page(monkeypatch, birder_index, TINY_BIRDER)
    at.text_input(key="words").input("a photo of a cat").run()
    assert not at.exception and not cards(at)
    message = at.error[0].value
    assert message.startswith("Cannot search with these words: text search needs a CLIP text")
    assert "\\-\\-text\\-weights PATH" in message  # the library's words, markdown-escaped
    monkeypatch.setenv("PHOTO_INDEX_TEXT_WEIGHTS", str(FULL_CLIP))  # `index serve --text-weights`
    at.text_input(key="words").input("a photo of a dog").run()
    assert not at.exception and not at.error and len(cards(at)) == 12
