"""The hostile-input corpus: every file ends indexed or ledgered with a specific reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_BIRDER
from hostile import make_corpus

from indexer.build import build
from indexer.store.catalog import Catalog


def test_every_hostile_file_is_indexed_or_ledgered(tmp_path, settings, tiny_encoder):
    root = tmp_path / "hostile"
    expect = make_corpus(root, empty_files=10_000)
    summary = build([root], settings, encoder=tiny_encoder)
    cat = Catalog(settings.index, readonly=True)
    indexed = {os.path.relpath(r["path"], root) for r in cat.records()}
    ledger = {
        os.path.relpath(f["path"], root): f for f in cat.failures() if "empties" not in f["path"]
    }
    empties = [f for f in cat.failures() if "empties" in f["path"]]
    for name, expectation in expect.items():
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        if expectation == "indexed":
            assert shown in indexed, (name, ledger.get(shown))
        else:
            assert shown in ledger, (name, sorted(ledger))
            assert expectation in ledger[shown]["reason"], ledger[shown]
            assert shown not in indexed
    assert len(empties) == 10_000 and all("empty file" in f["reason"] for f in empties)
    assert summary.failed == len(ledger) + 10_000
    assert summary.images == len(indexed)
    # the loop (loop/back -> root) was not followed twice
    assert not any(p.startswith("loop") for p in indexed)


def test_exit_code_and_summary_report_failures(tmp_path):
    root = tmp_path / "pics"
    expect = make_corpus(root, empty_files=3)
    proc = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "build", str(root), "--index", str(tmp_path / "i")]
        + ["--weights", str(TINY_BIRDER), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    failed = sum(1 for v in expect.values() if v != "indexed") + 3
    assert proc.returncode == 3, proc.stderr
    assert f"failed {failed}" in proc.stdout
    assert f"{failed} files could not be indexed" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("one_read", [False, True])
def test_file_deleted_or_rewritten_after_scan(tmp_path, one_read):
    """Between scan and decode: a vanished file is ledgered, a rewritten one is not embedded;
    a file hashed while decoding (one read) gets the same hash as the plan's hashing."""
    from indexer.build.pipeline import DecodeJob, decode_one
    from indexer.files import content_hash

    src = Path(__file__).resolve().parent / "fixtures" / "photos" / "flat" / "cat.jpg"
    gone, changed, kept = tmp_path / "gone.jpg", tmp_path / "changed.jpg", tmp_path / "kept.jpg"
    for p in (gone, changed, kept):
        p.write_bytes(src.read_bytes())
    jobs = [
        DecodeJob(
            p.name, str(p), p.stat().st_size, p.stat().st_mtime_ns, hash_while_decoding=one_read
        )
        for p in (gone, changed, kept)
    ]
    gone.unlink()
    changed.write_bytes(src.read_bytes() + b"\x00" * 10)
    a, b, c = (decode_one(j) for j in jobs)
    assert a["error"][0] == "read" and "disappeared" in a["error"][1]
    assert b["error"][0] == "read" and "changed during the build" in b["error"][1]
    assert c["digest"] == (content_hash(kept) if one_read else None)
    assert c["pixels"].shape == (224, 224, 3)


def test_slow_decode_is_abandoned(tmp_path):
    from PIL import Image

    from indexer.build.pipeline import DecodeJob, decode_one
    from indexer.imaging import DecodeOptions

    big = tmp_path / "big.png"
    Image.new("RGB", (4000, 3000), (1, 2, 3)).save(big)
    out = decode_one(DecodeJob("k", str(big)), DecodeOptions(timeout=0.01))
    assert out["error"] == ("decode", "decoding took longer than 0.01 s")
    assert "pixels" in decode_one(DecodeJob("k", str(big)), DecodeOptions(timeout=30))


def test_big_file_is_hashed_by_streaming(tmp_path, monkeypatch):
    """A file over ONE_READ_MAX is not held in memory: streamed hash, decoded from its path."""
    from indexer.build import pipeline
    from indexer.files import content_hash

    src = Path(__file__).resolve().parent / "fixtures" / "photos" / "flat" / "cat.jpg"
    monkeypatch.setattr(pipeline, "ONE_READ_MAX", src.stat().st_size - 1)
    job = pipeline.DecodeJob(
        "k", str(src), src.stat().st_size, src.stat().st_mtime_ns, hash_while_decoding=True
    )
    out = pipeline.decode_one(job)
    assert out["digest"] == content_hash(src) and out["pixels"].shape == (224, 224, 3)
