"""Every stage of `index build` on one box, as images/s, in one run (driver for bench/gpu.sh).

Stages: the device's bf16 matmul ceiling, the encoder alone (ViT-L/14, random weights; eager
and torch.compile), decode alone (worker processes), end to end (`build()` on generated JPEGs),
FAISS build + tuned search on N vectors (torch-on-GPU training vs FAISS on the CPU vs bare
FAISS), and the dedup pair search (exact on the GPU vs the CPU cell join). A stage that fails
is reported as failed and the run goes on; the table is rewritten after every stage.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
import traceback
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import faiss
import numpy as np
import torch
from dedup import planted_recall, synthetic  # same vectors as bench/dedup.py
from faiss_index import bare_faiss_seconds
from PIL import Image

from indexer.build import build
from indexer.build.pipeline import DecodeJob, decoded_batches
from indexer.dedup.graph import cosine_pairs
from indexer.encoder import ViTConfig, load_encoder, save_random_checkpoint
from indexer.settings import Settings
from indexer.store.vectors import VectorIndex, choose_spec

VIT_L_GFLOP = 162.0  # forward FLOPs per 224² image (2 × MACs)
H100_BF16_TFLOPS = 989.0  # dense, datasheet


class Table:
    """Rows of (stage, figure), written to `out` after every stage so a cut run keeps them."""

    def __init__(self, out: str | None, title: str) -> None:
        self.rows: list[tuple[str, str]] = []
        self.out, self.title = out, title

    def add(self, stage: str, figure: str) -> None:
        self.rows.append((stage, figure))
        print(f"{stage}: {figure}", flush=True)
        self.write()

    def text(self) -> str:
        lines = ["| stage | figure |", "|---|---|", *(f"| {k} | {v} |" for k, v in self.rows)]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        if self.out:
            Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            Path(self.out).write_text(f"# {self.title}\n\n{self.text()}")

    def stage(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - report and go on to the next stage
            traceback.print_exc()
            self.add(name, f"FAILED: {type(exc).__name__}: {str(exc)[:200]}")


BASES = 64  # distinct pictures per folder; the other files differ from them in a comment only


def _jpeg(args: tuple[int, int, int]) -> bytes:
    w, h, seed = args
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), dtype=np.int16)
    img += rng.integers(-10, 11, img.shape, dtype=np.int16)  # sensor-like grain: photo-sized
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_folder(
    folder: Path, n: int, size: tuple[int, int], seed: int, procs: int, twins: bool = False
) -> float:
    """n distinct JPEGs of `size` (BASES pictures, each file with its own JPEG comment, so every
    file has its own content hash and costs a full decode); returns their mean size in MB.

    The comments are padded so that no two files have the same size, as in a real collection
    (where equal sizes are rare: the build hashes those files ahead, the others as it decodes);
    `twins`: files 2k and 2k+1 have the same size (different bytes), so all are hashed ahead.
    """
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(size[0], size[1], seed * 1000 + i) for i in range(min(n, BASES))]
    with Pool(procs) as pool:
        bases = pool.map(_jpeg, jobs)
    target = max(len(b) for b in bases) + 64  # file i is target + i bytes long (or + i // 2)
    total = 0
    for i in range(n):
        data = bases[i % len(bases)]
        pad = target + (i // 2 if twins else i) - len(data)
        com, text = b"", f"photo-index bench {i} ".encode()
        while pad > 0:  # COM segments right after SOI: 4 header bytes + up to 65,531 of text
            body = text.ljust(min(pad, 65535) - 4, b".")
            com += b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body
            pad -= len(body) + 4
        (folder / f"{seed}_{i:05d}.jpg").write_bytes(data[:2] + com + data[2:])
        total += len(data) + len(com)
    return total / n / 1e6


def evict(folder: Path) -> None:
    """Drop the folder's files from the page cache (as after a reboot: read from the disk)."""
    os.sync()
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def decode_rate(folder: Path, workers: int, batch: int) -> float:
    jobs = [DecodeJob(str(p), str(p)) for p in sorted(folder.iterdir())]
    start = time.perf_counter()
    done = sum(len(b.keys) for b in decoded_batches(jobs, batch_size=batch, workers=workers))
    return done / (time.perf_counter() - start)


def encoder_rate(encoder, batch: int, iters: int) -> tuple[float, np.ndarray]:
    """Images/s over `iters` batches (after a warm-up call), and the warm-up's projections."""
    crops = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    )
    if encoder.device.type == "cuda":
        crops = crops.pin_memory()
    first = encoder.encode_uint8(crops)
    start = time.perf_counter()
    for _ in range(iters):
        encoder.encode_uint8(crops)  # returns numpy: synchronized
    return iters * batch / (time.perf_counter() - start), first


def matmul_tflops(device: str) -> float:
    """Measured bf16 ceiling: mean of 10 products of two random 8192² matrices."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    parser.add_argument(
        "--vectors", type=int, default=0, help="FAISS/dedup size [default by device]"
    )
    parser.add_argument("--out", default=None)
    parser.add_argument("--workers", type=int, default=0, help="decode workers [default by device]")
    parser.add_argument(
        "--layers", type=int, default=0, help="encoder depth (24 = ViT-L; fewer: decode-bound)"
    )
    parser.add_argument(
        "--cold", action="store_true", help="drop the JPEGs from the page cache before each pass"
    )
    parser.add_argument(
        "--stages", default="peak,encoder,e2e,faiss,dedup", help="comma list of stages to run"
    )
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    gpu = args.device.startswith("cuda")
    cores = os.cpu_count() or 2
    if gpu:
        n3, n12, vecs, batch, iters, layers = 5000, 1000, 1_000_000, 256, 20, 24
    elif args.quick:
        n3, n12, vecs, batch, iters, layers = 16, 4, 20_000, 4, 1, 2
    else:
        n3, n12, vecs, batch, iters, layers = 64, 8, 100_000, 8, 2, 24
    vecs = args.vectors or vecs
    layers = args.layers or layers
    workers = args.workers or max(1, cores - (1 if gpu else 0))
    name = torch.cuda.get_device_name(0) if gpu else platform.processor() or "cpu"
    table = Table(args.out, f"bench/gpu.sh on {args.device} ({name})")
    table.add(
        "device",
        f"{args.device} ({name}), torch {torch.__version__}, faiss {faiss.__version__} "
        f"({faiss.get_num_gpus()} FAISS GPUs), {cores} CPU cores, {workers} decode workers",
    )
    state: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        weights = save_random_checkpoint(tmpdir / "vit.safetensors", ViTConfig(layers=layers))

        def peak() -> None:
            state["peak"] = matmul_tflops(args.device)
            table.add("bf16 matmul 8192³ (measured ceiling)", f"{state['peak']:,.0f} TFLOP/s")

        def encoders() -> None:
            eager = load_encoder(weights, device=args.device)
            rate, ref = encoder_rate(eager, batch, iters)
            state["encoder"], state["enc"] = eager, rate
            depth = "" if layers == 24 else f", ViT-L width, {layers} layers"
            table.add(
                f"encoder alone, eager ({eager.dtype}, batch {batch}{depth})", _mfu(rate, state)
            )
            if args.no_compile or args.quick:
                return
            start = time.perf_counter()
            comp = load_encoder(weights, device=args.device, compile=True)
            comp.encode_uint8(torch.zeros((batch, 224, 224, 3), dtype=torch.uint8))
            compile_s = time.perf_counter() - start
            rate_c, out = encoder_rate(comp, batch, iters)
            cos = float(np.min(np.sum(ref * out, axis=1)))
            table.add(
                f"encoder alone, torch.compile (batch {batch})",
                f"{_mfu(rate_c, state)}; compile {compile_s:.0f} s; min cosine vs eager {cos:.5f}",
            )
            if rate_c > 1.03 * rate:
                state["encoder"], state["enc"] = comp, rate_c

        state["batch"], state["iters"] = batch, iters

        if gpu and "peak" in stages:
            table.stage("bf16 matmul", peak)
        if stages & {"encoder", "e2e"}:
            table.stage("encoder", encoders)
        for label, n, size in (("3 MP", n3, (2000, 1500)), ("12 MP", n12, (4000, 3000))):
            if "e2e" in stages:
                table.stage(label, lambda label=label, n=n, size=size: _e2e(
                    table, state, tmpdir, label, n, size, (workers, batch, args.device, args.cold)
                ))  # fmt: skip
        if stages & {"faiss", "dedup"}:
            table.stage("vectors", lambda: _vectors(table, state, vecs))
        if gpu:  # the GPU figures first: the CPU ones take longest
            if "faiss" in stages:
                table.stage("FAISS on the GPU", lambda: _faiss(table, state, "auto"))
            if "dedup" in stages:
                table.stage("dedup on the GPU", lambda: _dedup(table, state, "cuda"))
        if "faiss" in stages:
            table.stage("FAISS on the CPU", lambda: _faiss(table, state, None))
        if "dedup" in stages:
            table.stage("dedup on the CPU", lambda: _dedup(table, state, "cpu"))
    print("\n" + table.text())


def _mfu(rate: float, state: dict) -> str:
    flops = rate * VIT_L_GFLOP / 1e3
    text = f"{rate:,.1f} img/s"
    if "peak" in state:
        text += (
            f" = {flops:,.0f} TFLOP/s: MFU {100 * flops / H100_BF16_TFLOPS:.1f} % of 989 "
            f"(datasheet), {100 * flops / state['peak']:.1f} % of the measured matmul"
        )
    return text


def _e2e(table, state, tmpdir, label, n, size, run) -> None:
    workers, batch, device, cold = run
    folder = tmpdir / label.replace(" ", "")
    start = time.perf_counter()
    mb = make_folder(folder, n, size, seed=len(label), procs=os.cpu_count() or 2)
    table.add(
        f"generated {n} {label} JPEGs", f"{time.perf_counter() - start:.1f} s, {mb:.2f} MB each"
    )
    cache = "cold page cache" if cold else "files in the page cache"
    if cold:
        evict(folder)
    dec = decode_rate(folder, workers, batch)
    table.add(f"decode alone, {label} ({workers} workers, draft, {cache})", f"{dec:,.1f} img/s")
    settings = Settings.from_env(
        env={}, index=tmpdir / f"index{n}", batch_size=batch, workers=workers, device=device
    )
    if cold:
        evict(folder)
    summary = build([folder], settings, encoder=state["encoder"])
    e2e = summary.embedded / summary.seconds
    # the encoder alone again, after the build: the bound is the mean of the two timings (a
    # shared VM's speed drifts between minutes; on a GPU box the two agree)
    after, _ = encoder_rate(state["encoder"], state["batch"], state["iters"])
    enc = (state["enc"] + after) / 2
    bound = min(dec, enc)
    which = "decode" if dec < enc else "encode"
    table.add(f"end to end `index build`, {label}", f"{e2e:,.1f} img/s ({summary.embedded} images)")
    table.add(
        "  encoder alone before / after the build",
        f"{state['enc']:,.1f} / {after:,.1f} img/s (mean {enc:,.1f})",
    )
    state["enc"] = after
    table.add(f"  ÷ min(decode, encode) = {bound:,.1f} ({which}-bound)", f"{e2e / bound:.2f}")
    st, k = summary.stages, summary.embedded
    table.add(
        "  stages of the build (s)",
        " · ".join(f"{name} {seconds:.2f}" for name, seconds in st.items()),
    )
    table.add(
        "  inside the build (img/s of the busy time)",
        f"encoding {k / max(st['encoding'], 1e-9):,.0f} · catalog writes "
        f"{k / max(st['catalog_writes'], 1e-9):,.0f}; main thread waited for decode "
        f"{100 * st['decode_wait'] / max(st['embed'], 1e-9):.0f} % of the embed stage",
    )


def _vectors(table: Table, state: dict, vecs: int) -> None:
    start = time.perf_counter()
    state["x"], state["planted"] = synthetic(vecs, 768, planted=max(10, vecs // 100))
    table.add(f"generated {vecs:,} × 768 clustered vectors", f"{time.perf_counter() - start:.1f} s")


def _faiss(table: Table, state: dict, torch_device: str | None) -> None:
    """Our build (torch on the GPU, or FAISS on the CPU) and, on the CPU, bare FAISS."""
    x = state["x"]
    vecs = len(x)
    spec = choose_spec(vecs, 768)
    ids = np.arange(vecs)
    how = "torch k-means on the GPU + add_preassigned" if torch_device else "FAISS on the CPU"
    start = time.perf_counter()
    index = VectorIndex.create(spec, 768)
    index.build(ids, x, torch_device=torch_device)
    built = time.perf_counter() - start
    tune = index.tune_nprobe(x[:500], 0.95, 10)
    table.add(
        f"FAISS {spec.description} build, {vecs:,} vectors, {how}",
        f"{built:.1f} s; tuned nprobe {tune.nprobe}: recall@10 {tune.recall_at_10:.3f}, "
        f"{tune.ms_per_query:.3f} ms/query",
    )
    if spec.nlist and not torch_device:
        bare_s = bare_faiss_seconds(x, ids, spec)
        table.add(
            "  bare FAISS on the CPU, same recipe",
            f"{bare_s:.1f} s (our overhead {100 * (built / bare_s - 1):+.1f} %)",
        )


def _dedup(table: Table, state: dict, device: str) -> None:
    x, planted = state["x"], state["planted"]
    start = time.perf_counter()
    pairs = cosine_pairs(np.arange(len(x)), x, 0.95, device=device)
    took = time.perf_counter() - start
    found = pairs.as_set()
    recall, _ = planted_recall(x, planted, found, 0.95)
    table.add(
        f"dedup pairs ≥ 0.95, {len(x):,} vectors, {pairs.info['method']}",
        f"{took:.1f} s; {len(found):,} pairs; planted recall {recall:.4f}",
    )


if __name__ == "__main__":
    main()
