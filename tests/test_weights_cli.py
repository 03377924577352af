"""Default-weights handling (offline, checksum memo) and `index embed` as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from conftest import FIXTURES, PHOTOS, TINY_HF, index_cli

from indexer.encoder import WeightsError, load_encoder, weights


def test_offline_without_a_cached_copy_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(WeightsError) as info:
        load_encoder(None, device="cpu", cache_dir=tmp_path / "empty-cache")
    message = str(info.value)
    assert message.startswith("The default ViT-L/14 weights are not downloaded and the hub")
    assert "--weights PATH" in message and "PHOTO_INDEX_WEIGHTS" in message
    assert "HF_HUB_OFFLINE" in message and "\n" not in message


def test_sha256_verified_once_then_remembered_for_that_size_and_mtime(tmp_path):
    """The 1.7 GB default checkpoint is hashed once, not at every start: the marker is trusted
    while size and mtime are unchanged, and a touched file is checked again."""
    blob = tmp_path / "w.pt"
    blob.write_bytes(b"weights" * 1000)
    good = hashlib.sha256(blob.read_bytes()).hexdigest()
    weights.verify_sha256(blob, good)
    assert json.loads(weights.marker_path(blob).read_text())["sha256"] == good
    st = blob.stat()
    blob.write_bytes(b"WEIGHTS" * 1000)  # other bytes, same size and mtime: not read again
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    weights.verify_sha256(blob, good)
    os.utime(blob, ns=(0, st.st_mtime_ns + 10**9))  # touched: hashed again, and refused
    with pytest.raises(WeightsError, match="sha256 is"):
        weights.verify_sha256(blob, good)


def test_sha256_mismatch_is_reported_and_nothing_deleted(tmp_path):
    blob = tmp_path / "w.pt"
    blob.write_bytes(b"tampered")
    with pytest.raises(WeightsError) as info:
        weights.verify_sha256(blob, "0" * 64)
    message = str(info.value)
    assert "sha256" in message and "mismatch" in message and str(blob) in message
    assert "nothing was deleted" in message and "\n" not in message
    assert blob.exists() and not weights.marker_path(blob).exists()


def test_index_embed_writes_reference_numbers(tmp_path):
    out = tmp_path / "e.npz"
    images = FIXTURES / "images"
    proc = index_cli("embed", str(images), "--weights", str(TINY_HF), "--output", str(out))
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
    proc = index_cli(
        "embed",
        str(PHOTOS / "flat" / "cat.jpg"),
        str(PHOTOS / "flat" / "not-an-image.txt"),
        "--weights",
        str(TINY_HF),
    )
    assert proc.returncode == 3
    assert proc.stdout.count("\n") == 1 and "cat.jpg\t32-d" in proc.stdout
    assert "not-an-image.txt" in proc.stderr and "Traceback" not in proc.stderr
