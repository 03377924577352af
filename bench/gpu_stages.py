"""The GPU-path stages of bench/gpu.sh (issue 18), measured only on a GPU box: nvImageCodec
decode vs the CPU's, the GPU preprocessing's agreement, a GPU-decode pipeline end to end, the
encoder's compile modes / CUDA graphs / batch sizes, the SDPA kernels, and FAISS on the GPU
(IVF build, k-NN join, cuVS CAGRA) against the torch path. A stage whose device or wheel is
missing adds "skipped: reason"; a stage that would overrun the run's time budget is skipped too.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from gpu_agreement import agreement

from indexer import gpu_decode, imaging
from indexer.encoder import load_encoder

NEEDS_CUDA = "skipped: needs a CUDA GPU"
ATTN = (16, 257, 64)  # ViT-L/14 at 224²: heads, tokens, head width


class Budget:
    """Seconds left for the optional stages: one that needs more than is left is skipped."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def allows(self, table, stage: str, need: float) -> bool:
        left = self.end - time.monotonic()
        if left < need:
            table.add(stage, f"skipped: over the time budget ({left:.0f} s left, needs {need:.0f})")
        return left >= need


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gpu_decode_rate(table, folder: Path, label: str, device: str, batch: int) -> None:
    """nvImageCodec decode + resize/crop alone, bytes already in memory (decode's own rate)."""
    stage = f"GPU decode + resize/crop alone, {label} (nvImageCodec, batch {batch})"
    reason = gpu_decode.unavailable()
    if reason:
        table.add(stage, f"skipped: {reason}")
        return
    decoder = gpu_decode.GpuDecoder(device)
    datas = [p.read_bytes() for p in sorted(folder.iterdir())]
    decoder.decode(datas[:batch])  # warm-up: allocations, the hardware decoder's start
    _sync(device)
    start, refused = time.perf_counter(), 0
    for i in range(0, len(datas), batch):
        refused += len(decoder.decode(datas[i : i + batch]).refused)
    _sync(device)
    rate = len(datas) / (time.perf_counter() - start)
    table.add(stage, f"{rate:,.1f} img/s; {refused} of {len(datas)} refused (CPU path)")


def _read(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()  # one read: the bytes are hashed and decoded
    return data, hashlib.sha256(data).hexdigest()


def gpu_pipeline(table, state: dict, folder: Path, label: str, run: tuple) -> None:
    """Read + hash on CPU threads (two batches ahead), nvImageCodec decode, resize/crop on the
    GPU, refused files through the CPU path, encode: a build's work without its catalog."""
    device, batch, workers = run
    stage = f"GPU-decode pipeline, {label} (read+hash, decode, crop, encode; no catalog)"
    reason = gpu_decode.unavailable()
    if reason:
        table.add(stage, f"skipped: {reason}")
        return
    decoder, encoder = gpu_decode.GpuDecoder(device), state["encoder"]
    paths = sorted(folder.iterdir())
    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    waits = {"read": 0.0, "decode": 0.0, "encode": 0.0}
    with ThreadPoolExecutor(workers) as pool:
        ahead = deque(pool.map(_read, c) for c in chunks[:2])
        start = time.perf_counter()
        for k in range(len(chunks)):
            t0 = time.perf_counter()
            got = list(ahead.popleft())
            if k + 2 < len(chunks):
                ahead.append(pool.map(_read, chunks[k + 2]))
            t1 = time.perf_counter()
            out = decoder.decode([data for data, _ in got])
            crops = [out.crops] + [_cpu_crop(got[i][0]) for i in sorted(out.refused)]
            t2 = time.perf_counter()
            encoder.encode_uint8(torch.cat([c.to(out.crops.device) for c in crops]))
            t3 = time.perf_counter()
            for key, took in zip(waits, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                waits[key] += took
    rate = len(paths) / (time.perf_counter() - start)
    enc = state.get("enc", 0.0)
    ratio = f"; {rate / enc:.2f} of the encoder alone ({enc:,.0f})" if enc else ""
    table.add(stage, f"{rate:,.1f} img/s{ratio}")
    table.add("  its stages (s)", " · ".join(f"{k} {v:.2f}" for k, v in waits.items()))


def _cpu_crop(data: bytes) -> torch.Tensor:
    """Today's CPU path for a file the GPU refused: [1, 224, 224, 3] uint8 (errors raise)."""
    img, _ = imaging.open_image(data, imaging.DecodeOptions(draft=True))
    return torch.from_numpy(imaging.to_uint8(img))[None]


def agreement_rows(table, device: str, vitl: bool) -> None:
    """gpu_agreement's rows: torch (and nvImageCodec) preprocessing vs the CPU contract."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, figures in agreement(device, Path(tmp), vitl=vitl):
            table.add(f"agreement: {name}", figures)


def compiled_rate(weights: Path, device: str, mode: str, batch: int, iters: int) -> float:
    """Images/s of the bf16 ViT-L forward compiled with `mode` ("default", "reduce-overhead":
    CUDA graphs, "max-autotune": tuned GEMMs + CUDA graphs), crops already on the device."""
    torch._dynamo.reset()
    model = load_encoder(weights, device=device, dtype="bf16").model
    forward = torch.compile(model, mode=None if mode == "default" else mode, dynamic=False)
    x = torch.randint(0, 256, (batch, 224, 224, 3), dtype=torch.uint8, device=device)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):  # compile, then record the graphs
            forward(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            forward(x)
        _sync(device)
    return iters * batch / (time.perf_counter() - start)


def mfu_variants(table, state: dict, weights: Path, run: tuple, budget: Budget) -> None:
    """The encoder alone under each compile mode and batch size (MFU as the encoder rows)."""
    device, iters, mfu = run
    if not device.startswith("cuda"):
        table.add("encoder MFU variants", NEEDS_CUDA)
        return
    for mode, batch, need in (
        ("default", 512, 60),
        ("reduce-overhead", 256, 60),
        ("reduce-overhead", 512, 60),
        ("max-autotune", 256, 240),
    ):
        stage = f"encoder alone, compile mode={mode}, batch {batch}, on-device crops"
        if budget.allows(table, stage, need):
            start = time.perf_counter()
            rate = compiled_rate(weights, device, mode, batch, iters)
            table.add(stage, f"{mfu(rate, state)}; {time.perf_counter() - start:.0f} s in all")


def sdpa_kernels(table, device: str, batch: int) -> None:
    """Each SDPA backend on ViT-L's attention shape (the model's strided q/k/v), and the
    kernel the default call runs (from the profiler)."""
    if not device.startswith("cuda"):
        table.add("SDPA kernels", NEEDS_CUDA)
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    heads, n, d = ATTN
    qkv = torch.randn(batch, n, 3, heads, d, device=device, dtype=torch.bfloat16)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    figures = []
    for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        try:
            with sdpa_kernel(getattr(SDPBackend, backend)):
                figures.append(f"{backend.lower()} {_ms(lambda: sdpa(q, k, v), device):.2f} ms")
        except (RuntimeError, AttributeError) as exc:
            figures.append(f"{backend.lower()} unavailable ({str(exc)[:60]})")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        sdpa(q, k, v)
        _sync(device)
    kernels = sorted({e.key[:60] for e in prof.key_averages() if e.device_type.name == "CUDA"})
    table.add(f"SDPA per layer, batch {batch}, {heads}x{n}x{d} bf16", " · ".join(figures))
    table.add("  default SDPA runs", ", ".join(kernels) or "(no CUDA kernel seen)")


def _ms(fn, device: str, iters: int = 20) -> float:
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return 1000 * (time.perf_counter() - start) / iters
