"""Paths and defaults in one place: CLI flags > environment variables > these defaults.

Every face (CLI, UI, benches) builds a `Settings` with `Settings.from_env(**flags)` and passes
it down explicitly; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

ENV_PREFIX = "PHOTO_INDEX_"
DEFAULT_EXCLUDES = (
    ".git",
    ".hg",
    ".svn",
    "@eaDir",
    "node_modules",
    "__pycache__",
    ".Trash",
    ".Trashes",
    "$RECYCLE.BIN",
    "System Volume Information",
    ".thumbnails",
)


@dataclass(frozen=True)
class Settings:
    """Everything a run can be told. Environment: PHOTO_INDEX_<FIELD> (e.g. PHOTO_INDEX_INDEX)."""

    index: Path = Path("data/index")
    weights: str | None = None  # path to any supported checkpoint; None = default download
    device: str = "auto"  # auto (every GPU, else CPU) | cpu | cuda | cuda:N | "cuda:0,cuda:1"
    dtype: str = "auto"  # auto | fp32 | bf16
    batch_size: int = 32
    compile: bool = False  # torch.compile the encoder (build only; worth it on GPUs)
    workers: int = 0  # 0 = choose from the CPU count
    max_megapixels: float = 150.0
    decode_timeout: float = 60.0  # seconds per image (in decode worker processes)
    excludes: tuple[str, ...] = field(default=DEFAULT_EXCLUDES)
    memory_budget_mb: float = 0.0  # 0 = no budget: Flat/IVF-Flat; else SQ8/PQ when needed
    target_recall: float = 0.95
    cache_dir: Path | None = None  # weights cache (defaults to the huggingface_hub cache)
    engine: str = "local"  # local | ray
    ray_address: str | None = None  # None = start a local Ray instance
    ray_actors: int = 0  # encoder actors; 0 = one per GPU in the cluster, else 1
    tombstone_days: float = 30.0  # keep the vectors of files gone from every path this long

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **flags: object) -> Settings:
        """Defaults, overridden by PHOTO_INDEX_* variables, overridden by non-None flags."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw not in (None, ""):
                values[f.name] = _coerce(f.name, raw)
        for name, value in flags.items():
            if value is not None:
                values[name] = _coerce(name, value)
        return replace(cls(), **values)

    @property
    def resolved_workers(self) -> int:
        """Decode worker processes: the flag, else one per core (at least 1)."""
        if self.workers > 0:
            return self.workers
        return max(1, (os.cpu_count() or 2))


def _coerce(name: str, value: object) -> object:
    if name in ("index", "cache_dir"):
        return Path(str(value)).expanduser()
    if name in ("batch_size", "workers", "ray_actors"):
        return int(value)  # type: ignore[arg-type]
    if name in (
        "max_megapixels",
        "memory_budget_mb",
        "target_recall",
        "decode_timeout",
        "tombstone_days",
    ):
        return float(value)  # type: ignore[arg-type]
    if name == "compile":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if name == "excludes":
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return tuple(value)  # type: ignore[arg-type]
    return value
