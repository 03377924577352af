"""GPU-style preprocessing against the CPU contract: pixels and projections (prints a table).

Pictures: the fixture images (tests/fixtures: the 13 clip-vit-tiny images and photos/flat, one
of each content) and two generated photos, 3 MP and 12 MP JPEGs made from a fixture photo (where
the build's JPEG draft applies). Paths compared, as uint8 224² crops:
  CPU contract   `imaging.to_uint8` on PIL's full decode (clip-224-bicubic-v1, what `index embed`
                 uses), CPU build: the same with the build's JPEG draft (what builds store),
  torch          `gpu_imaging.resize_crop_batch` on PIL's decode, upright by `gpu_imaging.orient`
                 (clip-224-bicubic-torch-v1, on --device),
  nvImageCodec   the same after `gpu_decode.GpuDecoder` (only where GPU decode is available).
Figures: max / mean absolute pixel difference, min / mean cosine of the projections by the tiny
fixture encoder and by ViT-L/14 with random weights (fp32, as bench/encoder.py builds it).

    python bench/gpu_agreement.py                 # CPU (~2 min with ViT-L on 2 cores)
    python bench/gpu_agreement.py --device cuda   # GPU box: nvImageCodec too, when installed
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from indexer import gpu_decode, gpu_imaging, imaging
from indexer.encoder import ViTConfig, load_encoder, save_random_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TINY = FIXTURES / "clip-vit-tiny" / "tiny_birder.pt"
_ORIENTATION = 0x0112


def fixture_pictures() -> list[Path]:
    """Every decodable fixture picture, one per content (photos/flat repeats some)."""
    seen, out = set(), []
    folders = (FIXTURES / "clip-vit-tiny" / "images", FIXTURES / "photos" / "flat")
    for path in sorted(p for folder in folders for p in folder.iterdir()):
        digest = hashlib.sha256(path.read_bytes()).digest()
        if digest in seen or path.suffix == ".txt":
            continue
        seen.add(digest)
        out.append(path)
    return out


def generated_photos(folder: Path) -> list[Path]:
    """A fixture photo enlarged to 3 MP and 12 MP, with grain, as quality-90 JPEGs."""
    base = Image.open(FIXTURES / "photos" / "flat" / "cat.jpg").convert("RGB")
    rng = np.random.default_rng(0)
    out = []
    for name, size in (("3MP.jpg", (2000, 1500)), ("12MP.jpg", (4000, 3000))):
        big = np.asarray(base.resize(size, Image.LANCZOS), dtype=np.int16)
        big = big + rng.integers(-6, 7, big.shape, dtype=np.int16)
        Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
        out.append(folder / name)
    return out


def cpu_crops(paths: list[Path], draft: bool) -> np.ndarray:
    """The CPU path's uint8 crops (draft: as builds decode JPEGs)."""
    options = imaging.DecodeOptions(draft=draft)
    return np.stack([imaging.to_uint8(imaging.open_image(p, options)[0]) for p in paths])


def decoded(path: Path) -> torch.Tensor:
    """PIL's full decode as stored (RGB, HWC uint8), turned upright by gpu_imaging.orient."""
    with Image.open(path) as img:
        orientation = int(img.getexif().get(_ORIENTATION, 1))
        rgb = np.array(imaging.to_rgb(img))
    return gpu_imaging.orient(torch.from_numpy(rgb), orientation)


def torch_crops(paths: list[Path], device: str) -> np.ndarray:
    """The torch path's uint8 crops, computed on `device`."""
    crops = gpu_imaging.resize_crop_batch([decoded(p).to(device) for p in paths])
    return crops.cpu().numpy()


def nv_crops(paths: list[Path], device: str) -> tuple[np.ndarray, list[int]] | str:
    """nvImageCodec + torch crops for the files it took (and their positions), or why not."""
    reason = gpu_decode.unavailable()
    if reason:
        return reason
    batch = gpu_decode.GpuDecoder(device).decode([p.read_bytes() for p in paths])
    return batch.crops.cpu().numpy(), batch.taken


def encoders(device: str, folder: Path) -> dict:
    """The tiny fixture encoder and ViT-L/14 with random weights, fp32 on `device`."""
    vitl = save_random_checkpoint(folder / "vitl.safetensors", ViTConfig())
    return {
        "tiny": load_encoder(TINY, device=device, dtype="fp32"),
        "ViT-L/14": load_encoder(vitl, device=device, dtype="fp32"),
    }


def compare(a: np.ndarray, b: np.ndarray, projections: dict) -> str:
    """Pixel differences of two crop sets and the cosines of their projections per encoder."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    text = f"max px diff {diff.max()}, mean {diff.mean():.3f}"
    for name, encode in projections.items():
        cos = np.sum(encode(a) * encode(b), axis=1)
        text += f"; {name} cosine min {cos.min():.6f} / mean {cos.mean():.6f}"
    return text


def agreement(device: str, folder: Path, vitl: bool = True) -> list[tuple[str, str]]:
    """(comparison, figures) rows: torch vs the CPU contract and build, draft vs contract
    (the difference builds already mix), and nvImageCodec where GPU decode is available."""
    paths = fixture_pictures() + generated_photos(folder)
    models = encoders(device, folder) if vitl else {"tiny": load_encoder(TINY, device, "fp32")}
    cache: dict = {}

    def projector(model):
        def encode(crops: np.ndarray) -> np.ndarray:
            key = (id(model), crops.tobytes())
            if key not in cache:
                cache[key] = model.encode_uint8(torch.from_numpy(crops))
            return cache[key]

        return encode

    proj = {name: projector(m) for name, m in models.items()}
    exact, build = cpu_crops(paths, draft=False), cpu_crops(paths, draft=True)
    ours = torch_crops(paths, device)
    n = f"{len(paths)} pictures"
    rows = [
        (f"torch ({device}) vs CPU contract, {n}", compare(ours, exact, proj)),
        (f"torch ({device}) vs CPU build (JPEG draft), {n}", compare(ours, build, proj)),
        (f"CPU build (JPEG draft) vs CPU contract, {n}", compare(build, exact, proj)),
    ]
    nv = nv_crops(paths, device)
    if isinstance(nv, str):
        rows.append(("nvImageCodec + torch vs CPU contract", f"skipped: {nv}"))
    else:
        crops, taken = nv
        k = f"{len(taken)} of {len(paths)} pictures (others refused: CPU path)"
        for label, ref in (("contract", exact), ("build", build)):
            figures = compare(crops, ref[taken], proj)
            rows.append((f"nvImageCodec + torch vs CPU {label}, {k}", figures))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-vitl", action="store_true", help="tiny encoder only (fast)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = agreement(args.device, Path(tmp), vitl=not args.no_vitl)
    print("| comparison | figures |\n|---|---|")
    for name, figures in rows:
        print(f"| {name} | {figures} |")


if __name__ == "__main__":
    main()
