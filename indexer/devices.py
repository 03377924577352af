"""Is there a CUDA GPU for torch? Answered without importing torch (about a second) on Linux
machines that have no NVIDIA driver, so CPU-only commands do not pay for the question.
"""

from __future__ import annotations

import os
import sys


def cuda_device() -> str | None:
    """ "cuda" when torch sees a GPU, else None (callers then stay on their CPU path)."""
    if sys.platform.startswith("linux") and not (
        os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")
    ):
        return None
    import torch

    return "cuda" if torch.cuda.is_available() else None
