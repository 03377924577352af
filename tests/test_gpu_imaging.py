"""The GPU path's preprocessing (torch ops, run here on the CPU) against the CPU contract on real
files, and the GPU decoder's CPU-side parts: which files it leaves to the CPU path, and that a
box without CUDA imports no nvidia module and says so in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FIXTURES, PHOTOS, ROOT
from PIL import Image, ImageOps

from indexer import devices, gpu_decode, gpu_imaging, imaging

IMAGES = sorted((FIXTURES / "images").iterdir())


def upright(path) -> torch.Tensor:
    """PIL's decode of a file, upright (PIL's EXIF transpose), as an HWC uint8 tensor."""
    return torch.from_numpy(np.array(imaging.to_rgb(imaging.open_image(path)[0])))


def test_torch_crops_match_the_cpu_contract_on_every_fixture_image(tiny_encoder):
    """13 real images of every format, one batch of mixed sizes: each crop within 2 grey levels
    of PIL's, and the projections agree (cosine >= 0.9999)."""
    ours = gpu_imaging.resize_crop_batch([upright(p) for p in IMAGES]).numpy()
    theirs = np.stack([imaging.to_uint8(imaging.open_image(p)[0]) for p in IMAGES])
    assert ours.shape == theirs.shape == (len(IMAGES), 224, 224, 3)
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05
    cos = np.sum(tiny_encoder.encode_uint8(ours) * tiny_encoder.encode_uint8(theirs), axis=1)
    assert cos.min() >= 0.9999


def test_large_photo_and_chw_layout(tmp_path):
    """A 1600x1200 photo (a 5x reduction, as for camera pictures) agrees with PIL; CHW input
    gives the same crops as HWC, and a picture's row does not depend on its batch."""
    big = Image.open(PHOTOS / "flat" / "cake.jpg").convert("RGB").resize((1600, 1200))
    big.save(tmp_path / "big.jpg", quality=92)
    small = upright(IMAGES[0])
    hwc = [upright(tmp_path / "big.jpg"), small]
    batch = gpu_imaging.resize_crop_batch(hwc)
    chw = gpu_imaging.resize_crop_batch([t.permute(2, 0, 1) for t in hwc], layout="CHW")
    assert torch.equal(batch, chw)
    assert torch.equal(batch[1:], gpu_imaging.resize_crop_batch([small]))
    ref = imaging.to_uint8(imaging.open_image(tmp_path / "big.jpg")[0])
    assert np.abs(batch[0].numpy().astype(int) - ref.astype(int)).max() <= 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_turns_pictures_as_exif_transpose_does(orientation):
    img = Image.open(PHOTOS / "flat" / "bee.jpg").convert("RGB")
    tagged = img.copy()
    tagged.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(tagged))
    got = gpu_imaging.orient(torch.from_numpy(np.array(img)), orientation).numpy()
    assert np.array_equal(got, expected)


def test_exif_rotated_jpeg_through_header_and_orient():
    """The JPEG whose EXIF says 6: the header gives the stored size and orientation, and the
    stored pixels turned by orient are PIL's upright pixels exactly."""
    path = FIXTURES / "images" / "cat-exif-rotated.jpg"
    head = gpu_decode.header(path.read_bytes())
    assert head == gpu_decode.Header(300, 451, 6)
    with Image.open(path) as img:
        stored = torch.from_numpy(np.array(img.convert("RGB")))
    assert tuple(stored.shape[:2]) == (head.height, head.width)
    assert torch.equal(gpu_imaging.orient(stored, head.orientation), upright(path))


def test_files_the_gpu_path_leaves_to_the_cpu_path(tmp_path):
    """Not a JPEG, a CMYK JPEG, a panorama beyond 8:1, a picture over the limits, garbage: each
    gets a reason (the CPU path decodes or ledgers it as today); an RGB JPEG gets a header."""
    Image.new("CMYK", (64, 48)).save(tmp_path / "cmyk.jpg")
    Image.new("RGB", (2000, 100), (9, 9, 9)).save(tmp_path / "strip.jpg")
    read = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    read["png"] = (FIXTURES / "images" / "boats on a lake.png").read_bytes()
    read["garbage"] = b"\xff\xd8\xff not really"
    jpeg = (PHOTOS / "flat" / "cat.jpg").read_bytes()
    reasons = {name: gpu_decode.header(data) for name, data in read.items()}
    assert reasons == {
        "cmyk.jpg": "JPEG in mode CMYK",
        "strip.jpg": "beyond the GPU path's aspect ratio",
        "png": "not a JPEG (PNG)",
        "garbage": "unreadable header (UnidentifiedImageError)",
    }
    assert gpu_decode.header(jpeg) == gpu_decode.Header(384, 256, 1)
    tight = imaging.DecodeOptions(max_megapixels=0.05)
    assert gpu_decode.header(jpeg, tight) == "over the megapixel limit"
    assert not gpu_imaging.fits(20000, 4)
    with pytest.raises(ValueError, match="aspect ratio"):
        gpu_imaging.resize_crop_batch([torch.zeros((4, 2000, 3), dtype=torch.uint8)])


@pytest.mark.skipif(devices.cuda_count() > 0, reason="a box without CUDA")
def test_without_cuda_gpu_decode_says_so_in_one_line_and_imports_no_nvidia():
    """`python -m indexer.gpu_decode`'s answer (its main) in a fresh process, which then holds
    no nvidia module (nor torch); making a decoder raises the same reason."""
    check = (
        "import sys, indexer.gpu_decode as g; code = g.main();"
        "assert not [m for m in sys.modules if m.startswith(('nvidia', 'torch'))], 'imported';"
        "sys.exit(code)"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "GPU decode unavailable: no CUDA GPU on this machine (pictures decode on the CPU)"
    ]
    with pytest.raises(RuntimeError, match="GPU decode unavailable"):
        gpu_decode.GpuDecoder("cpu")
