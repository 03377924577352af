"""The decode limits a user sets reach every decode: the encoder API on file paths and the
thumbnails of `index dedup`'s HTML report (both used the default limit before)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Gallery

from indexer import imaging
from indexer.build import build

CAT = Path(__file__).resolve().parent / "fixtures" / "photos" / "flat" / "cat.jpg"


def test_encoder_embed_on_paths_obeys_the_memory_limit(tiny_encoder):
    tight = imaging.DecodeOptions(max_decode_mb=0.01)
    with pytest.raises(imaging.ImageError, match="max-decode-mb"):
        tiny_encoder.embed([CAT], options=tight)
    assert tiny_encoder.embed([CAT]).projection.shape[0] == 1  # the default limit lets it in


def test_options_from_settings_survive_pickling(settings):
    """Decode workers and Ray get the options by pickle: the same limits arrive."""
    import pickle

    options = imaging.DecodeOptions.from_settings(settings, draft=True)
    assert pickle.loads(pickle.dumps(options)) == options
    assert (options.max_megapixels, options.max_decode_mb) == (
        settings.max_megapixels,
        settings.max_decode_mb,
    )
    assert options.timeout == settings.decode_timeout and options.draft_to == imaging.IMAGE_SIZE


def _report_thumbs(index: Path, out: Path, **env: str) -> list:
    run = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "dedup", "--index", str(index), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr
    gallery = Gallery()
    gallery.feed(out.read_text(encoding="utf-8"))
    at = gallery.data["fields"].index("thumb")
    return [m[at] for g in gallery.data["groups"] for m in g[7]]


def test_dedup_report_thumbnails_obey_the_memory_limit(tmp_path, settings):
    library = tmp_path / "library"
    library.mkdir()
    for name in ("cat.jpg", "cat copy.jpg"):
        shutil.copyfile(CAT, library / name)
    build([library], settings)
    # the limit first: a thumbnail made with the default limit would be cached in the index
    tight = _report_thumbs(settings.index, tmp_path / "a.html", PHOTO_INDEX_MAX_DECODE_MB="0.01")
    assert len(tight) == 2 and tight == [None, None]
    loose = _report_thumbs(settings.index, tmp_path / "b.html")
    assert len(loose) == 2 and None not in loose
