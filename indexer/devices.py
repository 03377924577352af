"""Is there a CUDA GPU for torch? Answered without importing torch (about a second) on Linux
machines that have no NVIDIA driver, so CPU-only commands do not pay for the question.
"""

from __future__ import annotations

import os
import re
import sys

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or a list such as cuda:0,cuda:1"
_ONE_DEVICE = re.compile(r"(cpu|cuda(:[0-9]+)?)")


def cuda_count() -> int:
    """How many CUDA GPUs torch sees (0 without a driver, checked before importing torch)."""
    if sys.platform.startswith("linux") and not (
        os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")
    ):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cuda_device() -> str | None:
    """ "cuda" when torch sees a GPU, else None (callers then stay on their CPU path)."""
    return "cuda" if cuda_count() else None


def check_device(spec: str) -> str | None:
    """None when the --device `spec` names devices this machine has, else a one-line reason."""
    spec = (spec or "auto").strip()
    if spec == "auto":
        return None
    parts = [p.strip() for p in spec.split(",")]
    for part in parts:
        if not _ONE_DEVICE.fullmatch(part):
            return f"--device {part!r}: use {DEVICE_CHOICES}"
    wanted = [int(p[5:]) if ":" in p else 0 for p in parts if p.startswith("cuda")]
    if not wanted:
        return None
    count = cuda_count()
    if count == 0:
        return f"--device {spec}: no CUDA GPU is available on this machine; use cpu or auto"
    if max(wanted) >= count:
        return f"--device {spec}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
    return None
