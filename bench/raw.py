"""RAW decode: images/s through the embedded preview vs a half-size demosaic, and what the choice
costs the embedding: cosine between the two paths' projections (tiny fixture, random ViT-L/14).

Each file is decoded both ways with indexer.raw (the preview path only where the file has one),
then cropped to the 224-px encoder input; the cosine of the two crops' projections is set beside
the cosine between different pictures, for scale. Random weights say how far apart the pixels
are through a network of that shape, not what real CLIP weights would do.

    python bench/raw.py                              # the DNG fixtures, 10 rounds, full ViT-L/14
    python bench/raw.py --synthetic-mp 24 --rounds 5 # and a 24 MP DNG with a 1620-px preview
    python bench/raw.py --files ~/Pictures/raw --rounds 3 --layers 4

--synthetic-mp writes its DNG with tests/fixtures/raw/make_dngs.py (pip install tifffile
imagecodecs); real camera files (--files) need nothing more than the [raw] extra.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from indexer import imaging, raw
from indexer.encoder import ViTConfig, load_encoder, save_random_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "raw"
TINY = ROOT / "tests" / "fixtures" / "clip-vit-tiny" / "tiny_birder.pt"
# as a build decodes: default megapixel limit, a JPEG preview drafted to >= 2x the crop
LIMITS = dict(
    max_megapixels=imaging.DEFAULT_MAX_MEGAPIXELS,
    max_decode_mb=1 << 20,
    draft_to=imaging.IMAGE_SIZE,
)
PATHS = {  # path name -> Limits.min_preview that forces it (a preview is used when it is there)
    raw.PREVIEW: 0,
    raw.DEMOSAIC: 1 << 30,
}


def decode(data: bytes, path: str) -> raw.RawPicture:
    return raw.decode(data, raw.Limits(PATHS[path], **LIMITS))


def timed(data: bytes, path: str, rounds: int) -> tuple[float, float]:
    """Images/s of decode + the encoder's 224-px crop (what a build's worker does), by the
    wall clock and by this process's CPU time (a shared box's load inflates only the first)."""
    imaging.to_uint8(decode(data, path).image)  # warm: first calls load codecs
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        imaging.to_uint8(decode(data, path).image)
    return rounds / (time.perf_counter() - start), rounds / (time.process_time() - cpu)


def crops(files: list[Path]) -> dict[tuple[str, str], np.ndarray]:
    """(file name, path) -> the uint8 224x224 crop the encoder would get."""
    out = {}
    for f in files:
        data = f.read_bytes()
        for path in PATHS:
            pic = decode(data, path)
            if pic.pixels_from == path:  # no preview: that path does not exist for this file
                out[f.name, path] = imaging.to_uint8(pic.image)
    return out


def cosines(encoder, crops: dict[tuple[str, str], np.ndarray]) -> tuple[dict, float]:
    """Per file: cosine preview vs demosaic; and the mean cosine between different files."""
    keys = list(crops)
    vecs = encoder.encode_uint8(torch.from_numpy(np.stack([crops[k] for k in keys])))
    vec = {k: v for k, v in zip(keys, vecs, strict=True)}
    names = sorted({n for n, _ in keys})
    same = {
        n: float(vec[n, raw.PREVIEW] @ vec[n, raw.DEMOSAIC])
        for n in names
        if (n, raw.PREVIEW) in vec
    }
    apart = [
        float(vec[a, raw.DEMOSAIC] @ vec[b, raw.DEMOSAIC])
        for a, b in itertools.combinations(names, 2)
    ]
    return same, float(np.mean(apart)) if apart else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, default=FIXTURES, help="a folder of RAW files")
    parser.add_argument("--rounds", type=int, default=10, help="decodes per file and path")
    parser.add_argument("--layers", type=int, default=ViTConfig().layers, help="ViT-L/14 depth")
    parser.add_argument("--synthetic-mp", type=float, default=0, help="add a DNG this big")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted(p for p in args.files.iterdir() if raw.is_raw(p))
        if args.synthetic_mp:
            files.insert(0, synthetic(Path(tmp), args.synthetic_mp))
        run(files, args)


def synthetic(folder: Path, megapixels: float) -> Path:
    """A 3:2 DNG of `megapixels` from a real photo, with a 1620x1080 preview, as cameras embed."""
    sys.path.insert(0, str(FIXTURES))
    from make_dngs import PHOTOS, write_dng  # tifffile + imagecodecs: a dev-time tool

    h = int((megapixels * 1e6 / 1.5) ** 0.5) & ~1
    w = int(h * 1.5) & ~1
    big = Image.open(PHOTOS / "unicode" / "鳥鳥.png").convert("RGB").resize((w, h), Image.BICUBIC)
    path = folder / f"synthetic-{megapixels:g}mp.dng"
    write_dng(
        path, big, bits=12, preview=big.resize((1620, 1080)), orientation=1,
        camera=("Acme", "Acme RAW-1"), taken="2021:06:05 14:03:01",
    )  # fmt: skip
    return path


def run(files: list[Path], args: argparse.Namespace) -> None:
    """The decode table, then the cosine table."""
    threads = torch.get_num_threads()
    print(f"RAW decode | {platform.processor() or platform.machine()}, {threads} torch threads")
    print("img/s: wall clock (CPU time); decode + 224-px crop, JPEG previews drafted as in builds")
    print("| file | sensor | preview | preview img/s | demosaic img/s | preview/demosaic (CPU) |")
    print("|---|---|---|---|---|---|")
    for f in files:
        data = f.read_bytes()
        pic = decode(data, raw.PREVIEW)
        sensor = f"{pic.width}x{pic.height}"
        wall_d, cpu_d = timed(data, raw.DEMOSAIC, args.rounds)
        demosaic = f"{wall_d:.1f} ({cpu_d:.1f})"
        if pic.pixels_from != raw.PREVIEW:
            print(f"| {f.name} | {sensor} | none | – | {demosaic} | – |")
            continue
        wall_p, cpu_p = timed(data, raw.PREVIEW, args.rounds)
        prev = f"{pic.image.width}x{pic.image.height} as decoded"
        preview = f"{wall_p:.1f} ({cpu_p:.1f})"
        print(f"| {f.name} | {sensor} | {prev} | {preview} | {demosaic} | {cpu_p / cpu_d:.1f}x |")
    pixels = crops(files)
    with tempfile.TemporaryDirectory() as tmp:
        vit_l = save_random_checkpoint(
            Path(tmp) / "vit_l14.safetensors", ViTConfig(layers=args.layers)
        )
        encoders = {
            "tiny fixture": load_encoder(TINY, device="cpu"),
            f"random ViT-L/14 ({args.layers} layers)": load_encoder(vit_l, device="cpu"),
        }
        print("\n| encoder | file | cos(preview, demosaic) | mean cos between different files |")
        print("|---|---|---|---|")
        for name, enc in encoders.items():
            same, apart = cosines(enc, pixels)
            for f, c in same.items():
                print(f"| {name} | {f} | {c:.4f} | {apart:.4f} |")


if __name__ == "__main__":
    main()
