"""JPEG decode on the GPU with NVIDIA nvImageCodec (`pip install 'photo-index[gpu]'`): batched,
straight into device memory, then `gpu_imaging`'s resize and crop into the encoder's input.

Opt-in and not wired into `index build`: MEASURED ONLY BY bench/gpu.sh on a GPU box (nothing on
a CPU box can run it; docs/gpu.md). Nothing imports nvidia modules until a GpuDecoder is made,
and `unavailable()` answers without them (and without torch). Files the GPU path does not take
(not a JPEG, CMYK, over the limits, refused by the decoder) come back in `refused`, for today's
CPU path.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from PIL import Image

from indexer import devices, imaging

if TYPE_CHECKING:
    import torch

WHEELS = ("nvidia-nvimgcodec-cu13", "nvidia-nvimgcodec-cu12")  # either one: the [gpu] extra
_ORIENTATION = 0x0112
_GPU_MODES = ("RGB", "L")  # YCbCr and grey JPEGs; CMYK/YCCK go to the CPU path


def unavailable() -> str | None:
    """None when GPU decode can run here, else one line saying why not (no import of nvidia
    modules, nor of CUDA where there is no NVIDIA driver)."""
    if devices.cuda_count() == 0:
        return "GPU decode unavailable: no CUDA GPU on this machine (pictures decode on the CPU)"
    for wheel in WHEELS:
        try:
            metadata.version(wheel)
            return None
        except metadata.PackageNotFoundError:
            continue
    return "GPU decode unavailable: nvImageCodec is not installed (pip install 'photo-index[gpu]')"


@dataclass(frozen=True)
class Header:
    """What the GPU path needs from a JPEG's header, read before any pixel is decoded."""

    width: int  # as stored, before EXIF orientation
    height: int
    orientation: int


def header(data: bytes, options: imaging.DecodeOptions = imaging.DecodeOptions()) -> Header | str:
    """The header of a JPEG the GPU path may take, or why the CPU path should decode it instead:
    not a JPEG, not YCbCr/grey, over the build's megapixel or memory limits (the CPU path then
    ledgers it as today), beyond the GPU path's aspect ratio, or an unreadable header."""
    from indexer import gpu_imaging

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode, (w, h) = img.format, img.mode, img.size
            orientation = int(img.getexif().get(_ORIENTATION, 1)) if fmt == "JPEG" else 1
    except Exception as exc:  # noqa: BLE001 - the CPU path gives the real reason
        return f"unreadable header ({type(exc).__name__})"
    if fmt != "JPEG":
        return f"not a JPEG ({fmt})"
    if mode not in _GPU_MODES:
        return f"JPEG in mode {mode}"
    if w * h / 1e6 > options.max_megapixels:
        return "over the megapixel limit"
    if imaging.decode_bytes(mode, (w, h)) / (1 << 20) > options.max_decode_mb:
        return "over the decode memory limit"
    if not gpu_imaging.fits(w, h):
        return "beyond the GPU path's aspect ratio"
    return Header(w, h, orientation)


@dataclass
class GpuBatch:
    """One batch through the GPU path: crops for the files it took, reasons for the others."""

    crops: torch.Tensor  # uint8 [len(taken), 224, 224, 3] on the device: Encoder.encode_uint8
    taken: list[int] = field(default_factory=list)  # input positions, row i of crops = taken[i]
    refused: dict[int, str] = field(default_factory=dict)  # input position -> why: CPU path


class GpuDecoder:
    """nvImageCodec on one CUDA device: the hardware JPEG engines where the card has them, the
    CUDA decoder elsewhere, never its CPU codecs (those files go to our CPU path). Libjpeg's
    fancy chroma upsampling, as PIL decodes; EXIF orientation applied by `gpu_imaging.orient`."""

    def __init__(
        self, device: str = "cuda", options: imaging.DecodeOptions = imaging.DecodeOptions()
    ) -> None:
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        import torch
        from nvidia import nvimgcodec  # the [gpu] extra; needs the CUDA driver

        self.device = torch.device(device)
        self.options = options
        kinds = ("HW_GPU_ONLY", "HYBRID_CPU_GPU", "GPU_ONLY")
        backends = [nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, k)) for k in kinds]
        self._decoder = nvimgcodec.Decoder(
            device_id=self.device.index or 0, backends=backends, options=":fancy_upsampling=1"
        )
        self._params = nvimgcodec.DecodeParams(
            apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB
        )

    def decode(self, datas: list[bytes]) -> GpuBatch:
        """Decode a batch of file contents on the device into the encoder's uint8 crops."""
        import torch

        from indexer import gpu_imaging

        heads = [header(d, self.options) for d in datas]
        refused = {i: h for i, h in enumerate(heads) if isinstance(h, str)}
        todo = [i for i, h in enumerate(heads) if isinstance(h, Header)]
        stream = torch.cuda.current_stream(self.device).cuda_stream
        try:
            chosen, images = [datas[i] for i in todo], []
            if chosen:
                images = self._decoder.decode(chosen, params=self._params, cuda_stream=stream)
        except Exception as exc:  # noqa: BLE001 - the whole batch then decodes on the CPU
            images = [None] * len(todo)
            refused.update({i: f"nvImageCodec failed: {exc}"[:200] for i in todo})
        taken, pictures = [], []
        for i, image in zip(todo, images, strict=True):
            picture = None if image is None else _upright(image, heads[i])
            if picture is None:
                refused.setdefault(i, "refused by nvImageCodec")
            else:
                taken.append(i)
                pictures.append(picture)
        crops = gpu_imaging.resize_crop_batch(pictures)
        return GpuBatch(crops.to(self.device), taken, refused)


def _upright(image: Any, head: Header) -> torch.Tensor | None:
    """A decoded nvImageCodec image as an upright HWC RGB tensor, None when its shape is not
    the header's (the CPU path then decodes the file)."""
    import torch

    from indexer import gpu_imaging

    picture = torch.from_dlpack(image)
    if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture.expand(-1, -1, 3)
    if tuple(picture.shape) != (head.height, head.width, 3) or picture.dtype != torch.uint8:
        return None
    return gpu_imaging.orient(picture, head.orientation)


def main() -> int:
    """`python -m indexer.gpu_decode`: one line, whether GPU decode can run here (exit 0) or why
    not (exit 1)."""
    reason = unavailable()
    print(reason or "GPU decode available: nvImageCodec on CUDA (opt-in; see docs/gpu.md)")
    return 1 if reason else 0


if __name__ == "__main__":
    sys.exit(main())
