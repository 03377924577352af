"""The `index` command as a new user meets it: --version, -h, shell completion, help in words,
a start-up that loads nothing heavy, readable stats, dates that exist, "no results", EPS files
without Ghostscript named as such."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import PHOTOS, ROOT, TINY_BIRDER, index_cli, invoke
from PIL import EpsImagePlugin

from indexer.settings import Settings

W = ["--weights", str(TINY_BIRDER)]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """(photos, index): two photos (one with EXIF dates) and an EPS drawing, indexed once."""
    root = tmp_path_factory.mktemp("face")
    photos = root / "photos"
    photos.mkdir()
    for name in ("cat.jpg", "bee.jpg"):
        shutil.copy(PHOTOS / "flat" / name, photos / name)
    (photos / "drawing.eps").write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 20 20\n%%EndComments\n"
        b"newpath 0 0 moveto 20 20 lineto stroke\n%%EOF\n"
    )
    from indexer.build import build

    settings = Settings.from_env(env={}, index=root / "index", weights=str(TINY_BIRDER), workers=1)
    build([photos], settings)
    return photos, root / "index"


def test_version_and_short_help():
    from importlib.metadata import version

    shown = invoke("--version")
    assert shown.exit_code == 0 and shown.stdout == f"photo-index {version('photo-index')}\n"
    import indexer

    assert indexer.__version__ == version("photo-index")
    for args in (["-h"], ["build", "-h"], ["decide", "keep", "-h"]):
        short = invoke(*args)
        assert short.exit_code == 0 and short.stdout == invoke(*args[:-1], "--help").stdout


def test_shell_completion_is_there():
    listed = invoke("--help").stdout
    assert "--install-completion" in listed and "--show-completion" in listed
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_INDEX_COMPLETE": "complete_bash"}
    proc = subprocess.run(
        [sys.executable, "-c", "from indexer.cli import app; app(prog_name='index')"],
        env={**env, "COMP_WORDS": "index build --ind", "COMP_CWORD": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.split() == ["--index"], proc.stderr


def test_help_names_values_in_words_not_python_types():
    for command in ("build", "search", "embed", "serve", "dedup", "export"):
        text = invoke(command, "--help").stdout
        assert re.search(r"<\w+[\[>]|\{\w+\}|list\[", text) is None, text  # <path>, {paths}
    build = " ".join(invoke("build", "--help").stdout.split())
    assert "build [OPTIONS] PATH..." in build and "--index DIR" in build
    assert "--batch-size N" in build and "--max-decode-mb MB" in build
    serve = " ".join(invoke("serve", "--help").stdout.split())
    for env in ("PHOTO_INDEX_INDEX", "PHOTO_INDEX_WEIGHTS", "PHOTO_INDEX_TEXT_WEIGHTS"):
        assert f"[env {env}" in serve


def imported_by(*args: object) -> set[str]:
    """The top-level packages `index ARGS...` imports (in a fresh process)."""
    probe = (
        "import sys, json; from indexer.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *map(str, args)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return set(json.loads(proc.stderr.splitlines()[-1]))


def test_help_loads_no_heavy_library():
    """What makes `index --help` slow is what it imports: none of numpy, SQLAlchemy, torch,
    Pillow or FAISS (the seconds are measured in bench/startup.py, not here)."""
    heavy = {"numpy", "sqlalchemy", "torch", "PIL", "faiss", "huggingface_hub", "rich"}
    assert imported_by("--help") & heavy == set()
    assert imported_by("build", "--help") & heavy == set()


def test_commands_that_embed_nothing_do_not_load_torch(library):
    _, index = library
    for command in (["stats"], ["failures"], ["decide", "list"], ["dedup", "--json"]):
        assert "torch" not in imported_by(*command, "--index", index), command


def test_stats_reads_as_words_and_sizes(library):
    _, index = library
    shown = invoke("stats", "--index", index)
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert "None" not in text and "{" not in text and "=" not in text and "_bytes" not in text
    lines = dict(line.strip().split("  ", 1) for line in text.splitlines())
    assert lines["pictures"] == "2 (2 vectors searchable)"
    assert lines["failures"] == "1 (index failures lists them)"
    assert lines["search"].startswith("exact: every vector compared (IDMap2,Flat); recall@10 ")
    assert lines["on disk"].split()[1] in ("KB", "MB")
    data = json.loads(invoke("stats", "--index", index, "--json").stdout)  # the contract stays
    assert data["images"] == 2 and isinstance(data["disk_bytes"]["total"], int)


@pytest.mark.skipif(EpsImagePlugin.has_ghostscript(), reason="Ghostscript is installed here")
def test_an_eps_file_without_ghostscript_says_so(library):
    photos, index = library
    (row,) = json.loads(invoke("failures", "--index", index, "--json").stdout)
    assert row["path"] == str(photos / "drawing.eps")
    assert row["reason"] == (
        "an EPS picture: drawing it needs Ghostscript, which is not installed (install the "
        "ghostscript package, then run index build --retry-failed)"
    )


@pytest.mark.parametrize("day", ["2009-13", "2009-02-30", "2009-00", "0000", "2009-1-5"])
def test_a_date_that_does_not_exist_is_refused_naming_the_option(library, day):
    photos, index = library
    for option in ("--taken-from", "--taken-to"):
        found = invoke("search", photos / "cat.jpg", "--index", index, *W, option, day)
        assert found.exit_code == 1 and found.stdout == ""
        assert found.stderr.startswith(f"error: {option} {day}: not a date; use YYYY, YYYY-MM")
        assert found.stderr.count("\n") == 1


def test_an_empty_search_says_no_results(library):
    photos, index = library
    query = [photos / "cat.jpg", "--index", index, *W, "--taken-from", "2099-02-28"]
    found = invoke("search", *query)
    assert (
        found.exit_code == 0
        and found.stdout == "no results: no indexed picture passes the filters\n"
    )
    piped = index_cli("search", *query, "--paths-only")  # a pipe gets only paths
    assert (
        piped.stdout == "" and piped.stderr == "no results: no indexed picture passes the filters\n"
    )
