"""Encoder throughput: ours vs Hugging Face CLIPVisionModelWithProjection, same weights (table).

Full ViT-L/14 size with random weights (speed does not depend on their values). A random HF
model is saved as a folder and loaded into ours through our HF loader, so both hold the same
weights; both run with the same dtype (autocast), batch and threads in one process, timed in
alternating rounds; the ratio is ours / HF. Also: cosine of ours vs HF and of bf16 vs fp32.

    python bench/encoder.py                                 # CPU: fp32 and bf16, batch 8
    python bench/encoder.py --device cuda --batch 64,256,512 --dtypes bf16,fp32 --iters 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from indexer.encoder import ViTConfig, load_encoder, save_random_checkpoint

VIT_L14 = ViTConfig()  # width 1024, 24 layers, 16 heads, MLP 4096, patch 14, 224 px, proj 768


def make_hf_folder(folder: Path, layers: int) -> Path | None:
    """A random ViT-L/14 CLIPVisionModelWithProjection saved as a HF folder (None: no HF)."""
    try:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    except ImportError:
        return None
    cfg = CLIPVisionConfig(
        hidden_size=VIT_L14.width,
        intermediate_size=VIT_L14.mlp,
        num_hidden_layers=layers,
        num_attention_heads=VIT_L14.heads,
        image_size=VIT_L14.image_size,
        patch_size=VIT_L14.patch,
        projection_dim=VIT_L14.proj_dim,
        hidden_act="quick_gelu",
        layer_norm_eps=VIT_L14.eps,
    )
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def load_hf(folder: Path, device: str, model_class: type | None = None) -> torch.nn.Module:
    """The reference model (`model_class`, default CLIPVisionModelWithProjection) with PyTorch
    SDPA attention (its fastest built-in path); the text bench passes its text class."""
    if model_class is None:
        from transformers import CLIPVisionModelWithProjection as model_class

    try:
        model = model_class.from_pretrained(folder, attn_implementation="sdpa")
    except (TypeError, ValueError):
        model = model_class.from_pretrained(folder)
    return model.to(device).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def race(fns: dict, rounds: int, device: torch.device) -> dict:
    """Seconds per call (median) for each fn, after a warm-up, timed in alternating rounds."""
    times: dict = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Smallest row-wise cosine between two batches of vectors."""
    a, b = (
        torch.nn.functional.normalize(a.float(), dim=-1),
        torch.nn.functional.normalize(b, dim=-1),
    )
    return float((a * b.float()).sum(-1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch", default="8", help="comma-separated batch sizes")
    parser.add_argument("--iters", type=int, default=2, help="timed rounds per model")
    parser.add_argument("--layers", type=int, default=VIT_L14.layers)
    parser.add_argument("--dtypes", default="fp32,bf16")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtypes = args.dtypes.split(",")
    batches = [int(b) for b in args.batch.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_hf_folder(Path(tmp) / "hf", args.layers)
        if folder is None:
            print("transformers not installed: skipping reference (pip install '.[bench]')")
            cfg = ViTConfig(layers=args.layers)
            folder = save_random_checkpoint(Path(tmp) / "vit_l14.safetensors", cfg)
            hf = None
        else:
            hf = load_hf(folder, args.device)
        encoders = {d: load_encoder(folder, device=args.device, dtype=d) for d in dtypes}
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        arch = encoders[dtypes[0]].identity["architecture"]
        print(f"{arch} | {name}, {torch.get_num_threads()} threads, torch {torch.__version__}")
        head = f"{'dtype':<5} {'batch':>5} {'ours img/s':>10} {'HF img/s':>9} {'ours/HF':>7}"
        print(head + f" {'cos(ours,HF)':>12} {'cos(fp32)':>9}")
        rng = np.random.default_rng(0)
        for batch in batches:
            crops = torch.from_numpy(rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8))
            pixels = encoders[dtypes[0]].model.normalize_uint8(crops.to(device))
            fns = runners(encoders, hf, pixels, device)
            secs = race(fns, args.iters, device)  # every (dtype, model) alternates: fair ratios
            outs = {key: fn() for key, fn in fns.items()}
            for dtype in dtypes:
                rate = batch / secs[(dtype, "ours")]
                ref = outs.get(("fp32", "ours"))
                vs_fp32 = cosine(outs[(dtype, "ours")], ref) if ref is not None else None
                cells = [f"{dtype:<5} {batch:>5} {rate:>10.2f}"]
                if hf is None:
                    cells.append(f"{'-':>9} {'-':>7} {'-':>12}")
                else:
                    hf_rate = batch / secs[(dtype, "hf")]
                    agree = cosine(outs[(dtype, "ours")], outs[(dtype, "hf")])
                    cells.append(f"{hf_rate:>9.2f} {rate / hf_rate:>7.2f} {agree:>12.5f}")
                show = dtype != "fp32" and vs_fp32 is not None
                cells.append(f"{vs_fp32:>9.5f}" if show else f"{'-':>9}")
                print(" ".join(cells))
            if {"fp32", "bf16"} <= set(dtypes):
                speedup = secs[("fp32", "ours")] / secs[("bf16", "ours")]
                print(f"ours bf16 / fp32 speed at batch {batch}: {speedup:.2f}x")


def runners(
    encoders: dict, hf: torch.nn.Module | None, pixels: torch.Tensor, device: torch.device
) -> dict[tuple[str, str], Callable[[], torch.Tensor]]:
    """(dtype, "ours" | "hf") → a call returning the projections for `pixels`."""
    fns: dict[tuple[str, str], Callable[[], torch.Tensor]] = {}
    for dtype, enc in encoders.items():
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

        @torch.inference_mode()
        def ours(enc=enc, amp=amp) -> torch.Tensor:
            with amp:
                return enc.model(pixels)["projection"]

        @torch.inference_mode()
        def theirs(amp=amp) -> torch.Tensor:
            with amp:
                return hf(pixel_values=pixels).image_embeds

        fns[(dtype, "ours")] = ours
        if hf is not None:
            fns[(dtype, "hf")] = theirs
    return fns


if __name__ == "__main__":
    main()
