"""Every stage of `index build` on one box, as images/s, in one run (driver for bench/gpu.sh).

Stages: the device's bf16 matmul ceiling, the encoder alone (ViT-L/14, random weights; eager
and torch.compile), the GPU preprocessing's agreement with the CPU contract, decode alone
(worker processes; nvImageCodec on the GPU), end to end (`build()` on generated JPEGs; the
GPU-decode pipeline), SDPA kernels, FAISS build + tuned search on N vectors (torch-on-GPU
training vs FAISS on the CPU vs bare FAISS vs FAISS on the GPU), the dedup pair search (exact on
the GPU vs the CPU cell join vs FAISS GPU k-NN / cuVS CAGRA), and the encoder's compile modes
(bench/gpu_stages.py, gpu_vectors.py). A stage that fails is reported as failed and the run
goes on; one whose wheel or device is missing says "skipped: reason", as does one past the
--budget; the table is rewritten after every stage.
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
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import faiss
import numpy as np
import torch
from gpu_stages import (
    Budget,
    agreement_rows,
    gpu_decode_rate,
    gpu_pipeline,
    mfu_variants,
    sdpa_kernels,
)
from gpu_vectors import dedup_pairs, faiss_build, faiss_gpu, vectors
from PIL import Image

from indexer.build import build
from indexer.build.pipeline import DecodeJob, decoded_batches
from indexer.encoder import ViTConfig, load_encoder, save_random_checkpoint
from indexer.settings import Settings

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


STAGES = "peak,encoder,agreement,e2e,gpudecode,gpue2e,sdpa,faiss,dedup,mfu"


@dataclass
class Run:
    """One run's settings: the device, sizes by device, and where its files go."""

    device: str
    gpu: bool
    quick: bool
    sizes: tuple[int, int, int, int, int, int]  # 3 MP files, 12 MP files, vectors, batch, ...
    workers: int
    cold: bool
    compile: bool
    budget: Budget
    tmpdir: Path = Path()
    weights: Path = Path()


def _args() -> argparse.Namespace:
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
    parser.add_argument("--stages", default=STAGES, help="comma list of stages to run")
    parser.add_argument(
        "--budget", type=float, default=480, help="seconds: optional stages past it are skipped"
    )
    return parser.parse_args()


def main() -> None:
    args = _args()
    stages = set(args.stages.split(","))
    gpu = args.device.startswith("cuda")
    cores = os.cpu_count() or 2
    if gpu:
        sizes = (5000, 1000, 1_000_000, 256, 20, 24)
    elif args.quick:
        sizes = (16, 4, 20_000, 4, 1, 2)
    else:
        sizes = (64, 8, 100_000, 8, 2, 24)
    n3, n12, vecs, batch, iters, layers = sizes
    sizes = (n3, n12, args.vectors or vecs, batch, iters, args.layers or layers)
    workers = args.workers or max(1, cores - (1 if gpu else 0))
    run = Run(args.device, gpu, args.quick, sizes, workers, args.cold, not args.no_compile,
              Budget(args.budget))  # fmt: skip
    name = torch.cuda.get_device_name(0) if gpu else platform.processor() or "cpu"
    table = Table(args.out, f"bench/gpu.sh on {args.device} ({name})")
    table.add(
        "device",
        f"{args.device} ({name}), torch {torch.__version__}, faiss {faiss.__version__} "
        f"({faiss.get_num_gpus()} FAISS GPUs), {cores} CPU cores, {workers} decode workers",
    )
    with tempfile.TemporaryDirectory() as tmp:
        run.tmpdir = Path(tmp)
        vit = ViTConfig(layers=sizes[5])
        run.weights = save_random_checkpoint(run.tmpdir / "vit.safetensors", vit)
        _stages(table, {"batch": batch, "iters": iters}, stages, run)
    print("\n" + table.text())


def _stages(table: Table, state: dict, stages: set[str], run: Run) -> None:
    """Every stage named, in order of value: what a cut run must keep comes first."""
    n3, n12, vecs, batch, iters, _ = run.sizes
    if run.gpu and "peak" in stages:
        table.stage("bf16 matmul", lambda: _peak(table, state, run.device))
    if stages & {"encoder", "e2e", "gpue2e"}:
        table.stage("encoder", lambda: _encoders(table, state, run))
    if "agreement" in stages:  # ViT-L on 2 CPU cores takes minutes: the tiny encoder there
        table.stage("agreement", lambda: agreement_rows(table, run.device, vitl=run.gpu))
    for label, n, size in (("3 MP", n3, (2000, 1500)), ("12 MP", n12, (4000, 3000))):
        _size_stages(table, state, stages, run, (label, n, size))
    if "sdpa" in stages:
        table.stage("SDPA", lambda: sdpa_kernels(table, run.device, batch))
    if stages & {"faiss", "dedup"}:
        table.stage("vectors", lambda: vectors(table, state, vecs))
    if "faiss" in stages:  # says "skipped" where this faiss sees no GPU
        table.stage("FAISS GPU", lambda: faiss_gpu(table, state, run.budget))
    if run.gpu:  # the GPU figures first: the CPU ones take longest
        if "faiss" in stages:
            table.stage("FAISS on the GPU", lambda: faiss_build(table, state, "cuda"))
        if "dedup" in stages:
            table.stage("dedup on the GPU", lambda: dedup_pairs(table, state, "cuda"))
    if "mfu" in stages:
        mfu = (run.device, iters, _mfu)
        table.stage("MFU", lambda: mfu_variants(table, state, run.weights, mfu, run.budget))
    # on a GPU box, 1M vectors on 16 cores take ~2.5 min each: last, and only within the budget
    for name, on_cpu in (
        ("FAISS", lambda: faiss_build(table, state, None)),
        ("dedup", lambda: dedup_pairs(table, state, "cpu")),
    ):
        if name.lower() in stages and (
            not run.gpu or run.budget.allows(table, f"{name} on the CPU", 150)
        ):
            table.stage(f"{name} on the CPU", on_cpu)


def _size_stages(table: Table, state: dict, stages: set[str], run: Run, what: tuple) -> None:
    """One photo size: the CPU build end to end, then GPU decode alone and the GPU pipeline."""
    label, n, size = what
    folder = run.tmpdir / label.replace(" ", "")
    batch = run.sizes[3]
    if stages & {"e2e", "gpudecode", "gpue2e"}:
        table.stage(label, lambda: _folder(table, folder, label, (n, size)))
    if "e2e" in stages:
        e2e = (run.workers, batch, run.device, run.cold)
        table.stage(label, lambda: _e2e(table, state, folder, label, e2e))
    if "gpudecode" in stages:
        table.stage(label, lambda: gpu_decode_rate(table, folder, label, run.device, batch))
    if "gpue2e" in stages:
        pipe = (run.device, batch, run.workers)
        table.stage(label, lambda: gpu_pipeline(table, state, folder, label, pipe))


def _peak(table: Table, state: dict, device: str) -> None:
    state["peak"] = matmul_tflops(device)
    table.add("bf16 matmul 8192³ (measured ceiling)", f"{state['peak']:,.0f} TFLOP/s")


def _encoders(table: Table, state: dict, run: Run) -> None:
    batch, iters, layers = run.sizes[3], run.sizes[4], run.sizes[5]
    eager = load_encoder(run.weights, device=run.device)
    rate, ref = encoder_rate(eager, batch, iters)
    state["encoder"], state["enc"] = eager, rate
    depth = "" if layers == 24 else f", ViT-L width, {layers} layers"
    table.add(f"encoder alone, eager ({eager.dtype}, batch {batch}{depth})", _mfu(rate, state))
    if not run.compile or run.quick:
        return
    start = time.perf_counter()
    comp = load_encoder(run.weights, device=run.device, compile=True)
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


def _mfu(rate: float, state: dict) -> str:
    flops = rate * VIT_L_GFLOP / 1e3
    text = f"{rate:,.1f} img/s"
    if "peak" in state:
        text += (
            f" = {flops:,.0f} TFLOP/s: MFU {100 * flops / H100_BF16_TFLOPS:.1f} % of 989 "
            f"(datasheet), {100 * flops / state['peak']:.1f} % of the measured matmul"
        )
    return text


def _folder(table: Table, folder: Path, label: str, gen: tuple) -> None:
    """The JPEGs of one size, made once for the stages that read them."""
    n, size = gen
    start = time.perf_counter()
    mb = make_folder(folder, n, size, seed=len(label), procs=os.cpu_count() or 2)
    table.add(
        f"generated {n} {label} JPEGs", f"{time.perf_counter() - start:.1f} s, {mb:.2f} MB each"
    )


def _e2e(table, state, folder, label, run) -> None:
    workers, batch, device, cold = run
    n = len(list(folder.iterdir()))
    cache = "cold page cache" if cold else "files in the page cache"
    if cold:
        evict(folder)
    dec = decode_rate(folder, workers, batch)
    table.add(f"decode alone, {label} ({workers} workers, draft, {cache})", f"{dec:,.1f} img/s")
    settings = Settings.from_env(
        env={}, index=folder.parent / f"index{n}", batch_size=batch, workers=workers, device=device
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


if __name__ == "__main__":
    main()
