"""Every stage of `index build` on one box, as images/s, in one run (driver for bench/gpu.sh).

Stages: encoder alone (ViT-L/14, random weights), decode alone (worker processes), end to end
(`build()` on generated JPEGs), FAISS build + tuned search and the dedup k-NN graph on N
vectors. Writes a Markdown table to --out and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from dedup import synthetic  # same clustered vectors as bench/dedup.py
from PIL import Image

from indexer.build import build
from indexer.dedup.graph import cosine_pairs
from indexer.encoder import ViTConfig, load_encoder, save_random_checkpoint
from indexer.pipeline import DecodeJob, decoded_batches
from indexer.settings import Settings
from indexer.vectors import VectorIndex, choose_spec

VIT_L_GFLOP = 162.0  # forward FLOPs per 224² image (2 × MACs)
H100_BF16_TFLOPS = 989.0  # dense


def _jpeg(args: tuple[Path, int, int, int]) -> None:
    path, w, h, seed = args
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)  # smooth, photo-like
    img.save(path, quality=90)


def make_folder(folder: Path, n: int, size: tuple[int, int], seed: int, procs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [
        (folder / f"{seed}_{i:05d}.jpg", size[0], size[1], seed * 100_000 + i) for i in range(n)
    ]
    with Pool(procs) as pool:
        pool.map(_jpeg, jobs, chunksize=8)


def decode_rate(folder: Path, workers: int, batch: int) -> float:
    jobs = [DecodeJob(str(p), str(p)) for p in sorted(folder.iterdir())]
    start = time.perf_counter()
    done = sum(len(b.keys) for b in decoded_batches(jobs, batch_size=batch, workers=workers))
    return done / (time.perf_counter() - start)


def encoder_rate(encoder, batch: int, iters: int) -> float:
    crops = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    )
    if encoder.device.type == "cuda":
        crops = crops.pin_memory()
    encoder.encode_uint8(crops)
    start = time.perf_counter()
    for _ in range(iters):
        encoder.encode_uint8(crops)
    return iters * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    cores = os.cpu_count() or 2
    if gpu:
        n3, n12, vecs, batch, iters, layers = 5000, 1000, 1_000_000, 256, 20, 24
    elif args.quick:
        n3, n12, vecs, batch, iters, layers = 16, 4, 20_000, 4, 1, 2
    else:
        n3, n12, vecs, batch, iters, layers = 64, 8, 100_000, 8, 2, 24
    workers = max(1, cores - (1 if gpu else 0))
    rows: list[tuple[str, str]] = []
    name = torch.cuda.get_device_name(0) if gpu else platform.processor() or "cpu"
    rows.append(("device", f"{args.device} ({name}), {cores} CPU cores, {workers} decode workers"))
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        cfg = ViTConfig(layers=layers)
        weights = save_random_checkpoint(tmpdir / "vit_l14_random.safetensors", cfg)
        encoder = load_encoder(weights, device=args.device)
        enc = encoder_rate(encoder, batch, iters)
        rows.append((f"encoder alone ({encoder.dtype}, batch {batch})", f"{enc:,.1f} img/s"))
        if gpu:
            mfu = enc * VIT_L_GFLOP / 1e3 / H100_BF16_TFLOPS
            rows.append(("encoder MFU (of 989 TFLOP/s bf16)", f"{100 * mfu:.1f} %"))
        for label, n, size in (("3 MP", n3, (2000, 1500)), ("12 MP", n12, (4000, 3000))):
            folder = tmpdir / label.replace(" ", "")
            start = time.perf_counter()
            make_folder(folder, n, size, seed=len(label), procs=cores)
            rows.append((f"generated {n} {label} JPEGs", f"{time.perf_counter() - start:.1f} s"))
            dec = decode_rate(folder, workers, batch)
            rows.append((f"decode alone, {label}", f"{dec:,.1f} img/s"))
            settings = Settings.from_env(
                env={}, index=tmpdir / f"index{n}", batch_size=batch, workers=workers,
                device=args.device,
            )  # fmt: skip
            summary = build([folder], settings, encoder=encoder)
            e2e = summary.embedded / summary.seconds
            bound = min(dec, enc)
            rows.append((f"end to end `index build`, {label}", f"{e2e:,.1f} img/s"))
            rows.append((f"  ÷ min(decode, encode) ({bound:,.1f})", f"{e2e / bound:.2f}"))
        x, _ = synthetic(vecs, 768, planted=max(10, vecs // 100))
        start = time.perf_counter()
        index = VectorIndex.create(choose_spec(vecs, 768), 768)
        index.build(np.arange(vecs), x)
        tune = index.tune_nprobe(x[:500], 0.95, 10)
        rows.append(
            (
                f"FAISS {index.spec.description} build + tune, {vecs:,} vectors",
                f"{time.perf_counter() - start:.1f} s (nprobe {tune.nprobe}, recall@10 "
                f"{tune.recall_at_10:.3f}, {tune.ms_per_query:.3f} ms/query)",
            )
        )
        start = time.perf_counter()
        a, _, _ = cosine_pairs(np.arange(vecs), x, 0.95, index=index)
        rows.append((f"dedup k-NN graph, {vecs:,} vectors", f"{time.perf_counter() - start:.1f} s"))
    table = ["| stage | figure |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    text = "\n".join(table) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(f"# bench/gpu.sh on {args.device}\n\n" + text)


if __name__ == "__main__":
    main()
