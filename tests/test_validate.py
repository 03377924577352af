"""Issue 13 §7 through the `index` command: options are checked before the catalog is touched,
offline without weights fails fast and says where to get them, a failed first build leaves no
index, a missing or empty index says how to build one, --help keeps its bracketed text, and a
query path that is not a picture is named."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHOTOS, TINY_BIRDER, invoke

from indexer.build import build
from indexer.dedup import DEFAULT_KEEP
from indexer.devices import cuda_count
from indexer.encoder import weights
from indexer.settings import Settings, SettingsError

W = ["--weights", str(TINY_BIRDER)]
BUILD = ["--workers", "1", "--quiet"]


def one_error_line(result) -> str:
    """The single `error: ...` line the command printed (and nothing else on stderr)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def catalog_state(index: Path) -> tuple:
    """What a user's index holds: its files and how every build ended."""
    con = sqlite3.connect(index / "catalog.sqlite")
    try:
        files = sorted(r[0] for r in con.execute("SELECT path FROM files"))
        runs = [r[0] for r in con.execute("SELECT status FROM runs ORDER BY id")]
        return files, runs
    finally:
        con.close()


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, Path]:
    """(photos, index): four real photos indexed once; tests must leave the index as it is."""
    root = tmp_path_factory.mktemp("library")
    photos = root / "photos"
    photos.mkdir()
    for name in ("cat.jpg", "bee.jpg", "cake.jpg", "tree.webp"):
        shutil.copy(PHOTOS / "flat" / name, photos / name)
    settings = Settings.from_env(env={}, index=root / "index", weights=str(TINY_BIRDER), workers=1)
    build([photos], settings)
    return photos, root / "index"


# --- every option is checked before the catalog is touched ------------------------------------
BAD_BUILD_OPTIONS = [
    (["--engine", "bogus"], "--engine 'bogus': use local or ray"),
    (["--device", "gpu"], "--device 'gpu': use auto, cpu, cuda"),
    (["--device", "cuda:x"], "--device 'cuda:x': use auto, cpu, cuda"),
    (["--batch-size", "0"], "--batch-size 0: use a whole number of 1 or more"),
    (["--batch-size", "-4"], "--batch-size -4: use a whole number of 1 or more"),
    (["--workers", "-2"], "--workers -2: use a whole number of 1 or more"),
    (["--max-megapixels", "0"], "--max-megapixels 0.0: use a number above 0"),
    (["--memory-budget-mb", "-1"], "--memory-budget-mb -1.0: use a number of MB, 0 or more"),
    (["--weights", "/no/such/weights.pt"], "--weights /no/such/weights.pt: no such file"),
]


@pytest.mark.parametrize(("option", "message"), BAD_BUILD_OPTIONS)
def test_a_bad_build_option_changes_nothing(library, tmp_path, option, message):
    photos, index = library
    before = catalog_state(index)
    gone = tmp_path / "cat.jpg"  # a deleted photo: the plan would drop its row
    shutil.move(photos / "cat.jpg", gone)
    try:
        result = invoke("build", photos, "--index", index, *W, *BUILD, *option)
    finally:
        shutil.move(gone, photos / "cat.jpg")
    assert result.exit_code == 1
    assert message in one_error_line(result)
    files, runs = catalog_state(index)
    assert (files, runs) == before and "running" not in runs  # no row deleted, no run started
    fresh = tmp_path / "new-index"
    result = invoke("build", photos, "--index", fresh, *W, *BUILD, *option)
    assert result.exit_code == 1 and message in one_error_line(result)
    assert not fresh.exists()  # no index folder for a run that could not start


@pytest.mark.skipif(cuda_count() > 0, reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_before_the_catalog(library, tmp_path):
    photos, index = library
    for device in ("cuda", "cuda:1"):
        result = invoke("build", photos, "--index", tmp_path / "i", *W, *BUILD, "--device", device)
        assert result.exit_code == 1 and not (tmp_path / "i").exists()
        assert "no CUDA GPU is available" in one_error_line(result)
    result = invoke("search", photos / "cat.jpg", "--index", index, *W, "--device", "cuda")
    assert result.exit_code == 1 and "no CUDA GPU" in one_error_line(result)


def test_a_bad_environment_value_is_named(library, tmp_path, monkeypatch):
    photos, index = library
    monkeypatch.setenv("PHOTO_INDEX_BATCH_SIZE", "many")
    result = invoke("build", photos, "--index", tmp_path / "i", *W, *BUILD)
    assert result.exit_code == 1 and not (tmp_path / "i").exists()
    assert "--batch-size 'many': use a whole number" in one_error_line(result)


@pytest.mark.parametrize("k", ["0", "-3"])
def test_search_wants_at_least_one_result(library, k):
    photos, index = library
    result = invoke("search", photos / "cat.jpg", "-k", k, "--index", index, *W)
    assert result.exit_code == 1 and result.stdout == ""
    assert f"-k {k}: ask for 1 or more results" in one_error_line(result)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--keep", "prettiest"], "unknown --keep criterion 'prettiest': use camera, pixels"),
        (["--keep", "size,format:"], "--keep 'format:': name formats"),
        (["--keep", " , "], "--keep ' , ': name at least one criterion"),
        (["--prefer", "/no/such/folder"], "--prefer /no/such/folder: no such folder"),
        (["--hamming", "65"], "--hamming 65: use 0 to"),
        (["--hamming", "-1"], "--hamming -1: use 0 to"),
        (["--near-duplicate", "0"], "--near-duplicate 0.0: use a cosine in (0, 1]"),
        (["--near-duplicate", "1.5"], "--near-duplicate 1.5: use a cosine in (0, 1]"),
        (["--similar", "0.97"], "--similar 0.97: use a cosine below --near-duplicate"),
        (["--device", "gpu"], "--device 'gpu': use auto, cpu, cuda"),
    ],
)
def test_a_bad_dedup_option_is_named_before_any_work(library, tmp_path, option, message):
    _, index = library
    report = tmp_path / "r.html"
    result = invoke("dedup", "--index", index, "-o", report, *option)
    assert result.exit_code == 1 and message in one_error_line(result)
    assert not report.exists()


# --- offline without weights ------------------------------------------------------------------
def offline_build(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`index build` with no --weights, an empty hub cache and no proxy (how fast it fails is
    bench/startup.py's figure, not a test's)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHOTO_INDEX_", "HF_", "HUGGINGFACE_")) and "proxy" not in k.lower()
    }
    clean |= {"HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": os.getcwd(), **env}
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    shutil.copy(PHOTOS / "flat" / "cat.jpg", photos / "cat.jpg")
    index = tmp_path / "home" / "index"
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", "build", str(photos), "--index", str(index), *BUILD],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean,
    )


def assert_says_where_to_get_the_weights(proc: subprocess.CompletedProcess):
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert weights.IMAGE.url in line and weights.IMAGE.filename in line
    assert "--weights PATH" in line and "PHOTO_INDEX_WEIGHTS" in line


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "127.0.0.1: "),  # nothing listens there
    ],
)
def test_offline_without_weights_fails_fast_and_leaves_no_index(tmp_path, env, why):
    proc = offline_build(tmp_path, **env)
    assert_says_where_to_get_the_weights(proc)
    assert why in proc.stderr
    assert not (tmp_path / "home").exists()  # no empty index, not even its parent folder


def test_offline_for_real_with_the_real_hub_address(tmp_path):
    if weights.hub_unreachable() is None:
        pytest.skip("the hub is reachable from here: this test never downloads")
    proc = offline_build(tmp_path)
    assert_says_where_to_get_the_weights(proc)
    assert "huggingface.co: " in proc.stderr
    assert not (tmp_path / "home").exists()


# --- a failed first build leaves no empty index ----------------------------------------------
def test_weights_that_do_not_load_leave_no_index(library, tmp_path):
    photos, _ = library
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"these are not weights" * 10)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for index in (tmp_path / "a" / "b", kept):
        result = invoke("build", photos, "--index", index, "--weights", bad, *BUILD)
        assert result.exit_code == 1 and "Traceback" not in result.output
    assert not (tmp_path / "a").exists()
    assert sorted(os.listdir(kept)) == ["notes.txt"]  # a folder that was there keeps its files


# --- a missing or empty index says how to build one ------------------------------------------
READERS = [["stats"], ["failures"], ["verify"], ["dedup"], ["search", str(PHOTOS / "flat/cat.jpg")]]


@pytest.mark.parametrize("command", READERS, ids=lambda c: c[0])
def test_a_missing_index_says_how_to_build_one(tmp_path, command):
    index = tmp_path / "no index"
    result = invoke(*command, "--index", index, *(W if command[0] == "search" else []))
    assert result.exit_code == 1 and result.stdout == ""
    assert one_error_line(result) == (
        f"error: no index at {index}: build one with `index build PATH --index '{index}'`"
    )
    assert not index.exists()


@pytest.mark.parametrize("command", READERS, ids=lambda c: c[0])
def test_an_empty_index_says_so(tmp_path, command):
    empty = tmp_path / "nothing here"
    empty.mkdir()
    index = tmp_path / "index"
    assert invoke("build", empty, "--index", index, *W, *BUILD).exit_code == 0
    result = invoke(*command, "--index", index, *(W if command[0] == "search" else []))
    assert result.exit_code == 1 and result.stdout == ""
    assert one_error_line(result) == (
        f"error: the index at {index} is empty: build it with `index build PATH --index {index}`"
    )


def test_an_index_of_failures_lists_them_but_has_nothing_to_search(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    index = tmp_path / "index"
    assert invoke("build", photos, "--index", index, *W, *BUILD).exit_code == 3
    listed = invoke("failures", "--index", index)
    assert listed.exit_code == 0 and "broken.jpg" in listed.stdout
    result = invoke("search", PHOTOS / "flat" / "cat.jpg", "--index", index, *W)
    assert result.exit_code == 1
    assert "is empty (1 file could not be indexed: see `index failures`)" in result.stderr


# --- --help keeps its bracketed text ------------------------------------------------------------
def help_text(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(
        [sys.executable, "-m", "indexer.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


def test_help_shows_bracketed_text():
    text = help_text("build")
    assert "[env PHOTO_INDEX_INDEX;" in text and "[default: cores]" in text
    assert "[env PHOTO_INDEX_WEIGHTS;" in text
    squeezed = "".join(help_text("dedup").split())  # the long rule wraps at 120 columns
    assert f"[default:theoriginal:{DEFAULT_KEEP}]" in squeezed


# --- a query that is not a picture ------------------------------------------------------------
def test_search_names_a_query_that_is_not_a_picture(library, tmp_path):
    photos, index = library
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    cases = {
        tmp_path / "nope.jpg": "nope.jpg: no such file",
        photos: f"{photos}: is a folder; give one picture",
        fifo: "pipe.jpg: not a regular file (FIFO)",  # and no hang
        PHOTOS / "flat" / "not-an-image.txt": "not-an-image.txt: not an image",
    }
    for query, message in cases.items():
        result = invoke("search", query, "--index", index, *W)
        assert result.exit_code == 1 and message in one_error_line(result)
    found = invoke("search", photos / "cat.jpg", "--index", index, *W, "-k", "2")
    assert found.exit_code == 0 and len(found.stdout.splitlines()) == 2


@pytest.mark.parametrize(("event", "kept"), [("scan", False), ("embed", True)])
def test_an_interrupted_first_build_keeps_only_stored_work(library, tmp_path, event, kept):
    photos, _ = library
    settings = Settings.from_env(
        env={}, index=tmp_path / "index", weights=str(TINY_BIRDER), workers=1, batch_size=2
    )

    def ctrl_c(name: str, **_: object) -> None:
        if name == event:  # "embed" comes right after a batch was committed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build([photos], settings, progress=ctrl_c)
    assert (tmp_path / "index").exists() is kept
    if kept:
        files, _ = catalog_state(tmp_path / "index")
        assert files  # the committed batch is there for the next build


def test_environment_values_take_the_type_of_their_field():
    """Strings from the environment become the declared type; a bad one stays for validate."""
    env = {
        "PHOTO_INDEX_WORKERS": "3",
        "PHOTO_INDEX_COMPILE": "yes",
        "PHOTO_INDEX_EXCLUDES": "a, b",
        "PHOTO_INDEX_CACHE_DIR": "~/cache",
        "PHOTO_INDEX_TARGET_RECALL": "0.9",
        "PHOTO_INDEX_RAY_ADDRESS": "head:6379",
        "PHOTO_INDEX_BATCH_SIZE": "many",
    }
    s = Settings.from_env(env=env, index="~/i", max_decode_mb=5)
    assert (s.workers, s.compile, s.excludes) == (3, True, ("a", "b"))
    assert s.cache_dir == Path("~/cache").expanduser() and s.index == Path("~/i").expanduser()
    assert (s.target_recall, s.max_decode_mb, s.ray_address) == (0.9, 5.0, "head:6379")
    assert s.batch_size == "many"
    with pytest.raises(SettingsError, match="batch-size 'many'"):
        s.validate()
