"""The default ViT-L/14 weights: download once from the Hugging Face hub, verify sha256 once.

The verification is remembered in a marker beside the cached file (keyed by size and mtime), so
later runs do not re-hash 1.16 GB. Offline without a cached copy gives a message, not a trace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from indexer.encoder.checkpoints import sha256_file

REPO_ID = "birder-project/vit_l14_pn_quick_gelu_openai-clip"
FILENAME = "vit_l14_pn_quick_gelu_openai-clip.pt"
SHA256 = "2c7462390956d8942de0df21d9d1a43cf53fdbe3a3570a1add64d859313a0bee"
OFFLINE_HINT = (
    "pass --weights PATH (Birder .pt, open_clip/OpenAI state dict, OpenAI ViT-L-14.pt or a "
    "Hugging Face CLIP folder) or set PHOTO_INDEX_WEIGHTS"
)


class WeightsError(RuntimeError):
    """The default weights cannot be had or do not match their checksum."""


def verify_sha256(path: str | Path, expected: str = SHA256) -> None:
    """Check `path` against `expected` once; a marker remembers a success for this size+mtime."""
    path = Path(path)
    st = path.stat()
    marker = path.with_name(path.name + ".sha256-ok")
    stamp = {"sha256": expected, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        if json.loads(marker.read_text()) == stamp:
            return
    except (OSError, ValueError):
        pass
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"{path}: sha256 is {actual}, expected {expected}; the download is corrupt or not "
            "the ViT-L/14 checkpoint - delete it and run again, or " + OFFLINE_HINT
        )
    tmp = marker.with_name(marker.name + ".tmp")
    try:
        tmp.write_text(json.dumps(stamp))
        os.replace(tmp, marker)
    except OSError:  # a read-only cache still works, it just re-verifies next time
        pass


def default_weights(cache_dir: str | Path | None = None) -> Path:
    """Path of the verified default checkpoint, downloading it when allowed (HF_HUB_OFFLINE)."""
    from huggingface_hub import hf_hub_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        path = hf_hub_download(
            repo_id=REPO_ID,
            filename=FILENAME,
            cache_dir=str(cache_dir) if cache_dir else None,
            local_files_only=offline,
        )
    except Exception as exc:  # no network, offline mode, hub errors
        why = "offline mode (HF_HUB_OFFLINE) and no cached copy" if offline else type(exc).__name__
        raise WeightsError(
            f"the default ViT-L/14 weights ({REPO_ID}/{FILENAME}) are not downloaded and the hub "
            f"cannot be reached ({why}): {OFFLINE_HINT}"
        ) from None
    verify_sha256(path)
    return Path(path)
