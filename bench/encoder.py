"""Encoder throughput: ours vs Hugging Face CLIPVisionModelWithProjection, same weights (table).

Full ViT-L/14 size with random weights (the real ones cannot be downloaded here). Both models
run with the same dtype (autocast), batch and threads in one process; the ratio is ours / HF.

    python bench/encoder.py                      # CPU: fp32 and bf16, batch 8
    python bench/encoder.py --device cuda --batch 256 --dtypes bf16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from indexer.encoder import load_encoder


def make_hf_checkpoint(folder: Path, layers: int) -> Path | None:
    """A random ViT-L/14 CLIPVisionModelWithProjection saved as a HF folder (or None)."""
    try:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    except ImportError:
        return None
    cfg = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=layers,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(cfg)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def timed(fn, x: torch.Tensor, iters: int) -> float:
    """images/s of `fn(x)` after one warm-up call."""
    fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return iters * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--dtypes", default="fp32,bf16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_hf_checkpoint(Path(tmp) / "hf", args.layers)
        if folder is None:
            print("transformers not installed: skipping the reference (pip install '.[bench]')")
            return
        from transformers import CLIPVisionModelWithProjection

        hf = CLIPVisionModelWithProjection.from_pretrained(folder, attn_implementation="sdpa")
        hf = hf.to(args.device).eval()
        device = torch.device(args.device)
        rng = np.random.default_rng(0)
        crops = torch.from_numpy(rng.integers(0, 256, (args.batch, 224, 224, 3), dtype=np.uint8))
        print(f"device {args.device}, batch {args.batch}, threads {torch.get_num_threads()}")
        print(f"{'dtype':<6} {'ours img/s':>11} {'HF img/s':>9} {'ratio':>6} {'cos(HF)':>8}")
        fp32_ref = None
        for dtype in args.dtypes.split(","):
            ours = load_encoder(folder, device=args.device, dtype=dtype)
            pixels = ours.model.normalize_uint8(crops.to(device))
            amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

            @torch.inference_mode()
            def run_ours(x: torch.Tensor, ours=ours, amp=amp) -> torch.Tensor:
                with amp:
                    return ours.model(x)["projection"]

            @torch.inference_mode()
            def run_hf(x: torch.Tensor, amp=amp) -> torch.Tensor:
                with amp:
                    return hf(pixel_values=x).image_embeds

            ours_rate = timed(run_ours, pixels, args.iters)
            hf_rate = timed(run_hf, pixels, args.iters)
            a = run_ours(pixels).float()
            b = torch.nn.functional.normalize(run_hf(pixels).float(), dim=-1)
            cos = (a * b).sum(-1).min().item()
            line = f"{dtype:<6} {ours_rate:>11.2f} {hf_rate:>9.2f} {ours_rate / hf_rate:>6.2f}"
            line += f" {cos:>8.5f}"
            if dtype == "fp32":
                fp32_ref = a
            elif fp32_ref is not None:
                line += f"  cos(fp32) {(a * fp32_ref).sum(-1).min().item():.5f}"
            print(line)


if __name__ == "__main__":
    main()
