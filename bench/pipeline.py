"""Pipeline figures for `index build` (prints a table; not a test).

1. efficiency: end-to-end build images/s ÷ encoder-only images/s on the same images, one run;
2. decode images/s with and without JPEG draft on 12 MP JPEGs;
3. peak memory (RSS) of a build at N and 4N images: must not grow with N beyond the index.

    python bench/pipeline.py --weights tests/fixtures/clip-vit-tiny/tiny_birder.pt
    python bench/pipeline.py --vit-l   # full ViT-L/14 size, random weights (slow on CPU)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from indexer import imaging
from indexer.build.pipeline import BUILD_DECODE, DecodeJob, decode_one
from indexer.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def make_jpegs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """`n` distinct photo-like JPEGs of `size` made from the test corpus (crops + noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    jpegs = sorted((FIXTURES / "photos/flat").glob("*.jpg"))
    sources = [Image.open(p).convert("RGB") for p in jpegs]
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        x, y = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
        img = src.crop((x, y, x + 3 * w // 4, y + 3 * h // 4)).resize(size, Image.BILINEAR)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, (size[1], size[0], 1))
        path = folder / f"p{i:05d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def encoder_only(encoder, paths: list[Path], batch: int) -> float:
    """images/s of the encoder alone on already-decoded uint8 crops (same images as the build)."""
    crops = [decode_one(DecodeJob(str(p), str(p)), BUILD_DECODE)["pixels"] for p in paths]
    encoder.encode_uint8(np.stack(crops[:batch]))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(crops), batch):
        encoder.encode_uint8(np.stack(crops[i : i + batch]))
    return len(crops) / (time.perf_counter() - start)


def end_to_end(encoder, folder: Path, index: Path, batch: int, workers: int) -> float:
    from indexer.build import build

    settings = Settings.from_env(env={}, index=index, batch_size=batch, workers=workers)
    summary = build([folder], settings, encoder=encoder)
    return summary.embedded / summary.seconds


def decode_rate(paths: list[Path], draft: bool) -> float:
    start = time.perf_counter()
    for p in paths:
        out = decode_one(DecodeJob(str(p), str(p)), imaging.DecodeOptions(draft=draft))
        assert "pixels" in out, out
    return len(paths) / (time.perf_counter() - start)


def peak_rss_mb(folder: Path, index: Path, weights: str) -> float:
    """Peak RSS of a separate `index build` process (children included), in MB."""
    code = (
        "import resource, sys; from indexer.cli import app;\n"
        "try:\n app(sys.argv[1:])\nexcept SystemExit: pass\n"
        "r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
        "print('RSS', r, c)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "build", str(folder), "--index", str(index)]
        + ["--weights", weights, "--quiet", "--workers", "1"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RSS"))
    _, main, child = line.split()
    return max(int(main), int(child)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=str(FIXTURES / "clip-vit-tiny/tiny_birder.pt"))
    parser.add_argument("--vit-l", action="store_true", help="random full-size ViT-L/14")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=200, help="images for the efficiency run")
    parser.add_argument("--size", default="2000x1500", help="JPEG size for the efficiency run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decode-n", type=int, default=12, help="12 MP JPEGs to decode")
    parser.add_argument("--memory-n", type=int, default=150, help="N for the memory check")
    args = parser.parse_args()

    from indexer.encoder import load_encoder

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        weights = args.weights
        if args.vit_l:
            from indexer.encoder import save_random_checkpoint

            weights = str(save_random_checkpoint(tmpdir / "vit_l14_random.safetensors"))
        encoder = load_encoder(weights, device=args.device)
        w, h = (int(v) for v in args.size.split("x"))
        paths = make_jpegs(tmpdir / "eff", args.n, (w, h))
        # encoder alone before and after the build, averaged: a shared VM's speed drifts
        before = encoder_only(encoder, paths, args.batch)
        e2e_rate = end_to_end(encoder, tmpdir / "eff", tmpdir / "idx", args.batch, args.workers)
        after = encoder_only(encoder, paths, args.batch)
        enc_rate = (before + after) / 2
        big = make_jpegs(tmpdir / "big", args.decode_n, (4000, 3000), seed=1)
        plain, drafted = decode_rate(big, draft=False), decode_rate(big, draft=True)
        small_n, large_n = args.memory_n, 4 * args.memory_n
        make_jpegs(tmpdir / "m1", small_n, (640, 480), seed=2)
        make_jpegs(tmpdir / "m4", large_n, (640, 480), seed=3)
        rss1 = peak_rss_mb(tmpdir / "m1", tmpdir / "i1", args.weights)  # tiny: memory, not speed
        rss4 = peak_rss_mb(tmpdir / "m4", tmpdir / "i4", args.weights)
    rows = {
        "encoder": f"{encoder.identity['architecture']} on {args.device}, {encoder.dtype}",
        "images": f"{args.n} JPEGs {args.size}, batch {args.batch}, {args.workers} workers",
        "encoder-only images/s (before / after the build)": f"{before:.2f} / {after:.2f}",
        "end-to-end build images/s": round(e2e_rate, 1),
        "efficiency (e2e / encoder)": round(e2e_rate / enc_rate, 3),
        "decode 12 MP images/s, no draft": round(plain, 2),
        "decode 12 MP images/s, draft": round(drafted, 2),
        "draft speed-up": round(drafted / plain, 2),
        f"peak RSS build of {small_n} images (MB)": round(rss1, 1),
        f"peak RSS build of {large_n} images (MB)": round(rss4, 1),
        "RSS growth 4N / N": round(rss4 / rss1, 3),
    }
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(rows), file=sys.stderr)
    _ = resource  # the child measures itself


if __name__ == "__main__":
    main()
