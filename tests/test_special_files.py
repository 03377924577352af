"""FIFOs, devices and broken weights: every command finishes promptly with one line naming them.

A FIFO opened for reading blocks until a writer comes, and /dev/zero never ends: files are opened
with O_NONBLOCK and refused unless fstat says regular (`files.open_regular`). A checkpoint whose
weights are not finite would make every score NaN: it is refused at load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import PHOTOS, TINY_BIRDER, index_cli

from indexer import files, imaging
from indexer.encoder import CheckpointError, load_checkpoint


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`index ARGS...`; a FIFO must not hang it (the timeout turns a hang into a failure)."""
    return index_cli(*args, timeout=timeout)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_open_regular_refuses_fifos_and_devices_at_once(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "FIFO"), ("/dev/zero", "character device")):
        with pytest.raises(files.NotRegularFileError, match=rf"not a regular file \({kind}\)"):
            files.open_regular(path)
        with pytest.raises(OSError, match=kind):
            files.content_hash(path)
        with pytest.raises(imaging.ImageError, match=rf"not a regular file \({kind}\)"):
            imaging.open_image(path)
    with pytest.raises(IsADirectoryError):
        files.open_regular(tmp_path)
    with files.open_regular(PHOTOS / "flat" / "cat.jpg") as fh:  # a regular file reads as usual
        assert fh.read() == (PHOTOS / "flat" / "cat.jpg").read_bytes()


def test_build_with_symlinks_flipping_to_a_fifo_never_hangs(tmp_path):
    """Symlinks flipped between a picture and a FIFO while builds scan, hash and decode them."""
    lib, fifo = tmp_path / "lib", tmp_path / "pipe"
    lib.mkdir()
    os.mkfifo(fifo)
    pictures = sorted((PHOTOS / "flat").glob("*.jpg"))[:6]
    for picture in ("boats on a lake.png", "tree.webp", "chess-pawns.bmp"):
        shutil.copyfile(PHOTOS / "flat" / picture, lib / picture)
    for i, picture in enumerate(pictures):
        os.symlink(picture, lib / f"flip-{i}.jpg")
    stop = threading.Event()

    def flip() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            for i, picture in enumerate(pictures):
                tmp = lib / f".tmp-{i}"
                os.symlink(fifo if n % 2 else picture, tmp)
                os.replace(tmp, lib / f"flip-{i}.jpg")
            time.sleep(0.0005)  # leave the build some CPU

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        for _ in range(2):
            result = cli("build", lib, "--index", tmp_path / "index", "--weights",
                            TINY_BIRDER, "--workers", "1", "-q", timeout=90)  # fmt: skip
            assert result.returncode in (0, 3), result.stderr
    finally:
        stop.set()
        flipper.join()
    failures = cli("failures", "--index", tmp_path / "index", "--json")
    for row in json.loads(failures.stdout):  # a link caught as a FIFO or while it changed
        assert "/flip-" in row["path"] and row["reason"], row


@pytest.fixture
def replaced_by_fifos(tmp_path):
    """An index whose two copies of one picture were replaced by FIFOs after the build."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, picture in (("a.jpg", "cat.jpg"), ("b.jpg", "cat.jpg"), ("c.jpg", "cake.jpg")):
        shutil.copyfile(PHOTOS / "flat" / picture, lib / name)
    index = tmp_path / "index"
    built = cli("build", lib, "--index", index, "--weights", TINY_BIRDER, "--workers", "1")
    assert built.returncode == 0, built.stderr
    for name in ("a.jpg", "b.jpg"):
        (lib / name).unlink()
        os.mkfifo(lib / name)
    return lib, index


def test_dedup_and_search_with_a_picture_replaced_by_a_fifo(replaced_by_fifos, tmp_path):
    lib, index = replaced_by_fifos
    report = cli("dedup", "--index", index, "-o", tmp_path / "r.html", timeout=60)
    assert report.returncode == 0, report.stderr
    block = (tmp_path / "r.html").read_text().split("id='report-data'>")[1].split("</script>")[0]
    data = json.loads(block)
    path, thumb = data["fields"].index("path"), data["fields"].index("thumb")
    previews = {Path(m[path]).name: m[thumb] for g in data["groups"] for m in g[7]}
    assert previews == {"a.jpg": None, "b.jpg": None}  # no preview, no hang on the FIFOs
    found = cli("search", lib / "a.jpg", "--index", index, "--weights", TINY_BIRDER, timeout=60)
    assert found.returncode == 1
    assert error_lines(found) == [f"error: {lib / 'a.jpg'}: not a regular file (FIFO)"]
    embedded = cli("embed", lib / "b.jpg", lib / "c.jpg", "--weights", TINY_BIRDER, timeout=60)
    assert embedded.returncode == 3 and "c.jpg\t" in embedded.stdout
    assert error_lines(embedded) == [f"error: {lib / 'b.jpg'}: not a regular file (FIFO)"]


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder"])
def test_weights_that_are_not_a_file_fail_fast(kind, tmp_path):
    weights = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "w.pt", "folder": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(weights)
    result = cli("embed", PHOTOS / "flat" / "cat.jpg", "--weights", weights, timeout=60)
    want = {
        "/dev/zero": "/dev/zero: cannot read: not a regular file (character device)",
        "fifo": f"{weights}: cannot read: not a regular file (FIFO)",
        "folder": f"{weights}: folder has none of model.safetensors",
    }[kind]
    assert result.returncode == 1, result.stderr
    assert len(error_lines(result)) == 1 and error_lines(result)[0].startswith(f"error: {want}")


def test_weights_that_are_not_finite_are_refused(tmp_path):
    ckpt = torch.load(TINY_BIRDER, map_location="cpu", weights_only=True)
    ckpt["state"]["classifier.weight"][3, 5] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    build = ("build", PHOTOS / "flat", "--index", tmp_path / "index", "--workers", "1")
    for command in (("embed", PHOTOS / "flat" / "cat.jpg"), build):
        result = cli(*command, "--weights", bad, timeout=60)
        assert result.returncode == 1, result.stderr
        assert error_lines(result) == [
            f"error: {bad}: weights are not finite (classifier.weight has NaN)"
        ]
    ckpt["state"]["classifier.weight"][3, 5] = 0.0
    ckpt["state"]["encoder.block.0.mlp.0.bias"][0] = float("-inf")
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=r"encoder\.block\.0\.mlp\.0\.bias has Inf"):
        load_checkpoint(bad)
    # large finite half-precision weights whose sum overflows are still accepted
    ckpt["state"]["encoder.block.0.mlp.0.bias"] = torch.full_like(
        ckpt["state"]["encoder.block.0.mlp.0.bias"], 60000.0, dtype=torch.float16
    )
    torch.save(ckpt, bad)
    assert load_checkpoint(bad).state["blocks.0.fc1.bias"][0] == 60000.0
