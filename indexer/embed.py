"""`index embed`: encoder outputs for a list of images, saved as .npz or printed.

Uses the exact preprocessing contract (no draft), so the numbers match the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from indexer import files as fs
from indexer import imaging
from indexer.settings import Settings


@dataclass
class EmbedResult:
    """Per-image outputs in input order; images that failed are left out (see `failed`)."""

    paths: list[str] = field(default_factory=list)
    projection: np.ndarray | None = None
    embedding: np.ndarray | None = None
    features: np.ndarray | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)

    def save(self, output: str | Path) -> None:
        """Write the `index embed` .npz contract (Encoder's Embeddings format), atomically."""
        from indexer.encoder import Embeddings

        Embeddings(self.projection, self.embedding, self.features, self.paths).save(output)


def expand(paths: Iterable[str | Path], excludes: Iterable[str] = ()) -> tuple[list[str], list]:
    """Files as given plus the images inside given folders; returns (images, problems)."""
    found: list[str] = []
    problems: list[tuple[str, str]] = []
    for p in paths:
        if Path(p).is_dir():
            scan = fs.scan([p], excludes=excludes)
            found.extend(e.path for e in scan.images)
            problems.extend((e.path, reason) for e, reason in scan.not_images)
            problems.extend(scan.errors)
        else:
            found.append(str(p))
    return found, problems


def embed_paths(
    paths: Iterable[str | Path],
    settings: Settings,
    *,
    features: bool = False,
    batch_size: int = 16,
    encoder: object = None,
    on_error: Callable[[str, str], None] | None = None,
) -> EmbedResult:
    """Embed every readable image; unreadable ones are reported through `on_error`."""
    from indexer.encoder import load_encoder

    replace(settings, batch_size=batch_size).validate()  # SettingsError before any work

    enc = encoder or load_encoder(settings.weights, device=settings.device, dtype=settings.dtype)
    images, problems = expand(paths, settings.excludes)
    result = EmbedResult(failed=list(problems))
    outs: dict[str, list[np.ndarray]] = {"projection": [], "embedding": [], "features": []}
    batch: list[np.ndarray] = []
    options = imaging.DecodeOptions.from_settings(settings)

    def flush() -> None:
        if not batch:
            return
        out = enc.encode_pixels(np.stack(batch))
        for key in ("projection", "embedding") + (("features",) if features else ()):
            outs[key].append(np.asarray(out[key], dtype=np.float32))
        batch.clear()

    for path in images:
        try:
            img, _ = imaging.open_image(path, options)
            batch.append(imaging.preprocess(img))
        except imaging.ImageError as exc:
            result.failed.append((exc.path, exc.reason))
            continue
        result.paths.append(path)
        if len(batch) >= batch_size:
            flush()
    flush()
    dim, width = enc.dim, enc.width
    result.projection = (
        np.concatenate(outs["projection"]) if outs["projection"] else np.zeros((0, dim), np.float32)
    )
    result.embedding = (
        np.concatenate(outs["embedding"]) if outs["embedding"] else np.zeros((0, width), np.float32)
    )
    if features and outs["features"]:
        result.features = np.concatenate(outs["features"])
    if on_error:
        for path, reason in result.failed:
            on_error(path, reason)
    return result
