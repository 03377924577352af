"""Paths and defaults in one place: CLI flags > environment variables > these defaults.

Every face (CLI, UI, benches) builds a `Settings` with `Settings.from_env(**flags)` and passes
it down explicitly. The other readers of the environment are the weights download
(encoder/weights.py), which honours Hugging Face's own HF_HUB_OFFLINE like huggingface_hub, and
the Milvus connection (milvus/client.py), which takes its token only from MILVUS_TOKEN.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import platformdirs

from indexer.devices import check_device
from indexer.errors import SettingsError

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
ENGINES = ("local", "ray")
DTYPES = ("auto", "fp32", "bf16")


def default_index_home() -> Path:
    """The per-user data folder's `photo-index/index` (Linux: $XDG_DATA_HOME, else
    ~/.local/share): outside the photos, wherever a build is started from."""
    return platformdirs.user_data_path("photo-index", appauthor=False) / "index"


@dataclass(frozen=True)
class Settings:
    """Everything a run can be told. Environment: PHOTO_INDEX_<FIELD> (e.g. PHOTO_INDEX_INDEX)."""

    index: Path = field(default_factory=default_index_home)  # --index > PHOTO_INDEX_INDEX
    weights: str | None = None  # path to any supported checkpoint; None = default download
    text_weights: str | None = None  # full-CLIP checkpoint for text queries; None = the build's
    device: str = "auto"  # auto (every GPU, else CPU) | cpu | cuda | cuda:N | "cuda:0,cuda:1"
    dtype: str = "auto"  # auto | fp32 | bf16
    batch_size: int = 32
    compile: bool = False  # torch.compile the encoder (build only; worth it on GPUs)
    workers: int = 0  # 0 = choose from the CPU count
    max_megapixels: float = 150.0
    max_decode_mb: float = 768.0  # MiB one decode may hold (imaging.decode_bytes)
    max_file_mb: float = 2048.0  # MiB: longer files are ledgered unread (files.size_refusal)
    decode_timeout: float = 60.0  # seconds per image (in decode worker processes)
    excludes: tuple[str, ...] = field(default=DEFAULT_EXCLUDES)
    memory_budget_mb: float = 0.0  # 0 = no budget: Flat/IVF-Flat; else SQ8/PQ when needed
    target_recall: float = 0.95
    cache_dir: Path | None = None  # weights cache (defaults to the huggingface_hub cache)
    engine: str = "local"  # local | ray
    ray_address: str | None = None  # None = start a local Ray instance
    ray_actors: int = 0  # encoder actors; 0 = one per GPU in the cluster, else 1
    tombstone_days: float = 30.0  # keep the vectors of files gone from every path this long
    milvus: str | None = None  # search a Milvus collection (Lite .db file or http://host:port)
    milvus_collection: str = "photos"  # ... this one, kept in sync by `index export`

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

    def validate(self) -> Settings:
        """Raise SettingsError for the first option out of range; run before anything is written.

        Build, search and embed call it first, so a typo never half-runs a build.
        """
        for name, low, strict, allowed in _NUMBERS:
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or (value <= low if strict else value < low) or value != value:
                raise SettingsError(f"{_option(name)} {value!r}: use {allowed}")
        if self.target_recall > 1:
            raise SettingsError(f"{_option('target_recall')} {self.target_recall!r}: use (0, 1]")
        if self.engine not in ENGINES:
            raise SettingsError(f"--engine {self.engine!r}: use local or ray")
        if self.dtype not in DTYPES:
            raise SettingsError(f"--dtype {self.dtype!r}: use auto, fp32 or bf16")
        problem = check_device(self.device)
        if problem:
            raise SettingsError(problem)
        if self.weights and not os.path.exists(os.path.expanduser(self.weights)):
            raise SettingsError(f"--weights {self.weights}: no such file or folder")
        if self.text_weights and not os.path.exists(os.path.expanduser(self.text_weights)):
            raise SettingsError(f"--text-weights {self.text_weights}: no such file or folder")
        return self


# (field, bound, bound excluded?, what to use) for the numeric options
_NUMBERS = (
    ("batch_size", 1, False, "a whole number of 1 or more"),
    ("workers", 0, False, "a whole number of 1 or more (0 = one per core)"),
    ("max_megapixels", 0, True, "a number above 0"),
    ("max_file_mb", 0, True, "a number of MiB above 0"),
    ("decode_timeout", 0, True, "a number of seconds above 0"),
    ("memory_budget_mb", 0, False, "a number of MB, 0 or more (0 = no budget)"),
    ("ray_actors", 0, False, "a whole number, 0 or more (0 = one per GPU)"),
    ("target_recall", 0, True, "a number in (0, 1]"),
)
# fields that `index build` takes as a flag; the others are named by their environment variable
_FLAGS = {"batch_size", "workers", "max_megapixels", "max_file_mb", "memory_budget_mb"}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-") if name in _FLAGS else ENV_PREFIX + name.upper()


def _coerce(name: str, value: object) -> object:
    """The field's type; a value that does not convert stays as given for `validate` to name."""
    try:
        return _convert(name, value)
    except (TypeError, ValueError):
        return value


def _convert(name: str, value: object) -> object:
    """`value` as the type the Settings field `name` is declared with (Path, int, float...)."""
    kind = _field_types().get(name)
    if get_origin(kind) in (Union, UnionType):  # X | None → X
        kind = next(a for a in get_args(kind) if a is not type(None))
    if kind is Path:
        return Path(str(value)).expanduser()
    if kind is bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if kind in (int, float):
        return kind(value)  # type: ignore[call-overload, operator]
    if get_origin(kind) is tuple:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return tuple(value)  # type: ignore[call-overload]
    return value


@functools.cache
def _field_types() -> dict[str, Any]:
    """The Settings fields' declared types (resolved from their annotations once)."""
    return get_type_hints(Settings)
