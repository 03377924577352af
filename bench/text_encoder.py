"""Text encoder: ours vs Hugging Face CLIPTextModelWithProjection, same weights; query latency.

ViT-L/14's text size (width 768, 12 layers, 12 heads, MLP 3072, context 77, projection 768) with
random weights (speed does not depend on their values): a random HF model is saved as a folder
and loaded into ours through our HF loader, so both hold the same weights. Both run on the same
device and dtype (autocast), in one process, timed in alternating rounds; the ratio is ours / HF,
and the max abs difference of their normalized projections says they agree. Then the latency a
user waits for a text query once the model is loaded: tokenize + encode one prompt + search a
FAISS IVF index of --n vectors (the catalog join is in bench/ui_latency.py), median of --queries.

    python bench/text_encoder.py                               # CPU: fp32 and bf16, batch 1, 32
    python bench/text_encoder.py --device cuda --batch 1,256 --dtypes bf16,fp32
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from dedup import synthetic  # clustered unit vectors, as the FAISS bench
from encoder import load_hf, race  # the image encoder bench's reference loader and timer

from indexer.encoder.text_encoder import TextConfig, TextEncoder, load_text_encoder
from indexer.encoder.text_model import CLIPTextTower
from indexer.encoder.tokenizer import load_tokenizer
from indexer.store.vectors import VectorIndex, choose_spec

SUBJECTS = "dog cat child bicycle lighthouse mountain lake wedding cake birthday party".split()
SUBJECTS += "red car snowy street old bridge sunset beach market stall".split()
PLACES = ["", " on the beach", " in the snow", " at night", " in a forest", " with friends"]
PLACES += [" next to a river in the rain at dusk", " in front of a crowded train station"]


def prompts(n: int) -> list[str]:
    """n distinct search-box queries, 3 to 15 words: what people type."""
    out = []
    for i in range(n):
        subject, place = SUBJECTS[i % len(SUBJECTS)], PLACES[(i // 3) % len(PLACES)]
        out.append(f"a photo of a {subject}{place}" if i % 2 else f"{subject}{place} #{i}")
    return out


def make_hf_folder(folder: Path, cfg: TextConfig) -> Path | None:
    """A random CLIPTextModelWithProjection saved as a HF folder (None: no transformers)."""
    try:
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection
        from transformers.utils import logging
    except ImportError:
        return None
    logging.disable_progress_bar()
    hf_cfg = CLIPTextConfig(
        vocab_size=cfg.vocab,
        hidden_size=cfg.width,
        intermediate_size=cfg.mlp,
        projection_dim=cfg.proj_dim,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        max_position_embeddings=cfg.context,
        hidden_act="quick_gelu",
        layer_norm_eps=cfg.eps,
        eos_token_id=2,  # as openai/clip-vit-large-patch14: HF then pools at argmax(ids)
    )
    torch.manual_seed(0)
    CLIPTextModelWithProjection(hf_cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def _hf_text_class() -> type:
    from transformers import CLIPTextModelWithProjection

    return CLIPTextModelWithProjection


def ours_without_hf(cfg: TextConfig, device: str, dtype: str) -> TextEncoder:
    """Our tower with its own random weights, when transformers is not installed."""
    torch.manual_seed(0)
    model = CLIPTextTower(cfg)
    return TextEncoder(model, torch.device(device), dtype, {"architecture": cfg.architecture})


def runners(encoders: dict, hf: torch.nn.Module | None, ids: torch.Tensor) -> dict:
    """(dtype, "ours" | "hf" | "hf-cut") → a call returning normalized projections for `ids`:
    "hf" on the 77 ids of CLIP's convention, "hf-cut" on the ids cut after the batch's longest
    prompt (HF padded to the longest: the same positions ours runs)."""
    cut = ids[:, : int(ids.argmax(-1).max()) + 1]
    fns = {}
    for dtype, enc in encoders.items():
        amp = torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

        @torch.inference_mode()
        def ours(enc=enc, amp=amp) -> torch.Tensor:
            with amp:
                return enc.model(ids)["projection"].float()

        @torch.inference_mode()
        def theirs(amp=amp, ids=ids) -> torch.Tensor:
            with amp:
                out = hf(input_ids=ids).text_embeds.float()
            return torch.nn.functional.normalize(out, dim=-1)

        fns[(dtype, "ours")] = ours
        if hf is not None:
            fns[(dtype, "hf")] = theirs
            fns[(dtype, "hf-cut")] = lambda amp=amp: theirs(amp, cut)
    return fns


def throughput(encoders: dict, hf, batches: list[int], iters: int, device: str) -> None:
    """Prompts/s of both models per dtype and batch, their ratios and max abs difference."""
    tok = load_tokenizer()
    print(
        f"{'dtype':<5} {'batch':>5} {'tokens':>6} {'ours prompts/s':>14} {'HF (77)':>8} "
        f"{'HF (cut)':>8} {'ours/HF(77)':>11} {'ours/HF(cut)':>12}  max|ours-HF|"
    )
    for batch in batches:
        ids = torch.from_numpy(tok.tokenize(prompts(batch))).to(device)
        longest = int(ids.argmax(-1).max()) + 1
        fns = runners(encoders, hf, ids)
        secs = race(fns, iters, torch.device(device))
        outs = {key: fn() for key, fn in fns.items()}
        for dtype in encoders:
            rate = batch / secs[(dtype, "ours")]
            row = f"{dtype:<5} {batch:>5} {longest:>6} {rate:>14.1f}"
            if hf is None:
                print(f"{row} {'-':>8} {'-':>8} {'-':>11} {'-':>12}  -")
                continue
            full, cut = batch / secs[(dtype, "hf")], batch / secs[(dtype, "hf-cut")]
            diff = max(
                float((outs[(dtype, "ours")] - outs[(dtype, k)]).abs().max())
                for k in ("hf", "hf-cut")
            )
            print(
                f"{row} {full:>8.1f} {cut:>8.1f} {rate / full:>11.2f} {rate / cut:>12.2f}"
                f"  {diff:.2e}"
            )


def ivf_index(n: int, dim: int) -> tuple[VectorIndex, str]:
    """The index `index build` would make for n vectors (synthetic), its nprobe tuned as a
    build tunes it (recall@10 >= 0.95); and a line saying what it is."""
    x, _ = synthetic(n, dim, planted=0)
    spec = choose_spec(n, dim)
    index = VectorIndex.create(spec, dim)
    start = time.perf_counter()
    index.build(np.arange(n, dtype=np.int64), x)
    built = time.perf_counter() - start
    tuned = index.tune_nprobe(x[np.random.default_rng(1).choice(n, 200, replace=False)], 0.95, 10)
    index.nprobe = tuned.nprobe
    what = f"{spec.description} of {n:,} x {dim}, built in {built:.1f} s, nprobe {tuned.nprobe}"
    return index, f"{what}, recall@10 {tuned.recall_at_10:.3f}"


def query_latency(enc: TextEncoder, index: VectorIndex, queries: int) -> None:
    """Median ms for tokenize + encode one prompt + search, after a warm-up query; also the
    process CPU time per query (with --threads 1: what an idle core would take)."""
    tok = load_tokenizer()
    total, encode, cpu = [], [], []
    for i, text in enumerate(prompts(queries + 1)):
        start, start_cpu = time.perf_counter(), time.process_time()
        vector = enc.encode_ids(tok.tokenize([text]))
        encoded = time.perf_counter()
        index.search(vector, 10)
        if i:  # the first one warms caches and allocators up
            total.append(1000 * (time.perf_counter() - start))
            encode.append(1000 * (encoded - start))
            cpu.append(1000 * (time.process_time() - start_cpu))
    print(
        f"query latency {enc.dtype}: median {statistics.median(total):.1f} ms (tokenize + "
        f"encode {statistics.median(encode):.1f} ms), p90 {np.percentile(total, 90):.1f} ms, "
        f"CPU time median {statistics.median(cpu):.1f} ms, {len(total)} queries"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--iters", type=int, default=5, help="timed rounds per model")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--layers", type=int, default=TextConfig.layers)
    parser.add_argument("--width", type=int, default=TextConfig.width, help="also the projection")
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the FAISS index")
    parser.add_argument("--queries", type=int, default=50, help="0: no latency part")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    heads = max(1, args.width // 64)
    w = args.width
    cfg = TextConfig(width=w, layers=args.layers, heads=heads, mlp=4 * w, proj_dim=w)
    dtypes = args.dtypes.split(",")
    load = os.getloadavg()[0]
    cpu = f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
    cpu += f"load {load:.1f}"
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else cpu
    print(f"{cfg.architecture} | {name}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_hf_folder(Path(tmp) / "hf", cfg)
        if folder is None:
            print("transformers not installed: no reference (pip install '.[bench]')")
            encoders = {d: ours_without_hf(cfg, args.device, d) for d in dtypes}
            hf = None
        else:
            hf = load_hf(folder, args.device, _hf_text_class())
            encoders = {d: load_text_encoder(folder, args.device, d) for d in dtypes}
        throughput(encoders, hf, [int(b) for b in args.batch.split(",")], args.iters, args.device)
        del hf
        if args.queries:
            index, what = ivf_index(args.n, cfg.proj_dim)
            print(f"FAISS: {what}")
            for dtype in dtypes:
                query_latency(encoders[dtype], index, args.queries)


if __name__ == "__main__":
    main()
