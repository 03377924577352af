"""Default-weights handling (offline, checksum memo) and `index embed` as a user runs it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURES, PHOTOS, TINY_HF

from indexer.encoder import weights


def test_offline_without_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(weights.WeightsError) as info:
        weights.default_weights(cache_dir=tmp_path / "empty-cache")
    message = str(info.value)
    assert "--weights PATH" in message and "PHOTO_INDEX_WEIGHTS" in message
    assert "HF_HUB_OFFLINE" in message


def test_sha256_is_checked_once_and_remembered(tmp_path, monkeypatch):
    blob = tmp_path / "w.pt"
    blob.write_bytes(b"weights" * 1000)
    good = hashlib.sha256(blob.read_bytes()).hexdigest()
    weights.verify_sha256(blob, good)
    marker = tmp_path / "w.pt.sha256-ok"
    assert json.loads(marker.read_text())["sha256"] == good
    calls = []
    monkeypatch.setattr(weights, "sha256_file", lambda p: calls.append(p) or good)
    weights.verify_sha256(blob, good)
    assert calls == []  # remembered: not hashed again
    monkeypatch.undo()
    blob.write_bytes(b"tampered")
    with pytest.raises(weights.WeightsError, match="sha256 is"):
        weights.verify_sha256(blob, good)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_index_embed_writes_reference_numbers(tmp_path):
    out = tmp_path / "e.npz"
    images = FIXTURES / "images"
    proc = run_cli("embed", str(images), "--weights", str(TINY_HF), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    expected = np.load(FIXTURES / "tiny_expected.npz")
    names = [p.rsplit("/", 1)[-1] for p in got["paths"]]
    order = [names.index(str(n)) for n in expected["names"]]
    ref = expected["projection_no_bias"]
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.abs(got["projection"][order] - ref).max() <= 1e-4
    assert np.abs(got["embedding"][order] - expected["embedding"]).max() <= 1e-4
    assert "features" not in got.files


def test_index_embed_prints_lines_and_reports_bad_files(tmp_path):
    proc = run_cli(
        "embed",
        str(PHOTOS / "flat" / "cat.jpg"),
        str(PHOTOS / "flat" / "not-an-image.txt"),
        "--weights",
        str(TINY_HF),
    )
    assert proc.returncode == 3
    assert proc.stdout.count("\n") == 1 and "cat.jpg\t32-d" in proc.stdout
    assert "not-an-image.txt" in proc.stderr and "Traceback" not in proc.stderr
