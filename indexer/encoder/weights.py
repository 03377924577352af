"""The default ViT-L/14 weights: download once from the Hugging Face hub, verify sha256 once.

The verification is remembered in a marker beside the cached file (keyed by size and mtime), so
later runs do not re-hash 1.16 GB. Offline without a cached copy gives a message, not a trace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from indexer.encoder.checkpoints import sha256_file
from indexer.files import write_atomic

REPO_ID = "birder-project/vit_l14_pn_quick_gelu_openai-clip"
FILENAME = "vit_l14_pn_quick_gelu_openai-clip.pt"
SHA256 = "2c7462390956d8942de0df21d9d1a43cf53fdbe3a3570a1add64d859313a0bee"
OFFLINE_HINT = (
    "pass --weights PATH (Birder .pt, open_clip/OpenAI state dict, OpenAI ViT-L-14.pt, or a "
    "Hugging Face CLIP folder) or set PHOTO_INDEX_WEIGHTS."
)
_TRUE = ("1", "true", "yes", "on")


class WeightsError(RuntimeError):
    """The default weights cannot be had or do not match their checksum (one-line message)."""


def marker_path(path: Path) -> Path:
    """Where a successful check of `path` is remembered: `<file>.sha256-ok` beside it."""
    return path.with_name(path.name + ".sha256-ok")


def verify_sha256(path: str | Path, expected: str = SHA256) -> None:
    """Check `path` against `expected` once; a marker remembers a success for this size+mtime.

    A mismatch raises WeightsError and deletes nothing: the user decides what to do.
    """
    path = Path(path)
    st = path.stat()
    marker = marker_path(path)
    stamp = {"sha256": expected, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        if json.loads(marker.read_text()) == stamp:
            return
    except (OSError, ValueError):
        pass
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"{path}: sha256 is {actual}, expected {expected} (checksum mismatch): the file is "
            "damaged or is not the ViT-L/14 checkpoint; nothing was deleted - remove that file "
            "and run again to download it afresh, or " + OFFLINE_HINT
        )
    try:
        write_atomic(marker, json.dumps(stamp))
    except OSError:  # a read-only cache still works, it just re-verifies next time
        pass


def default_weights(cache_dir: str | Path | None = None, expected: str = SHA256) -> Path:
    """Path of the verified default checkpoint, downloading it unless HF_HUB_OFFLINE is set.

    Raises WeightsError with what to do when it is not cached and the hub cannot be reached.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    try:
        path = hf_hub_download(
            repo_id=REPO_ID,
            filename=FILENAME,
            cache_dir=str(cache_dir) if cache_dir else None,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError:  # offline, or no network, and not in the cache
        why = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise WeightsError(
            "The default ViT-L/14 weights are not downloaded and the hub cannot be reached"
            f"{why}: {OFFLINE_HINT}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - hub errors, disk full, ...: one line, not a trace
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(
            f"Could not download the default ViT-L/14 weights ({REPO_ID}/{FILENAME}: "
            f"{type(exc).__name__}: {first}): {OFFLINE_HINT}"
        ) from None
    verify_sha256(path, expected)
    return Path(path)
