"""The default ViT-L/14 weights: download once from the Hugging Face hub, verify sha256 once.

The verification is remembered in a marker beside the cached file (keyed by size and mtime), so
later runs do not re-hash 1.16 GB. Offline without a cached copy gives a message within seconds
(a short connection probe, not the hub client's retries), not a trace.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from indexer.encoder.checkpoints import sha256_file
from indexer.errors import WeightsError
from indexer.files import write_atomic

REPO_ID = "birder-project/vit_l14_pn_quick_gelu_openai-clip"
FILENAME = "vit_l14_pn_quick_gelu_openai-clip.pt"
SHA256 = "2c7462390956d8942de0df21d9d1a43cf53fdbe3a3570a1add64d859313a0bee"
DOWNLOAD_URL = f"https://huggingface.co/{REPO_ID}/resolve/main/{FILENAME}"
WHERE_HINT = f"download {FILENAME} (1.2 GB) from {DOWNLOAD_URL} where there is network, then "
PROBE_SECONDS = 3.0  # how long the hub may take to accept a connection before we call it offline
OFFLINE_HINT = (
    "pass --weights PATH (Birder .pt, open_clip/OpenAI state dict, OpenAI ViT-L-14.pt, or a "
    "Hugging Face CLIP folder) or set PHOTO_INDEX_WEIGHTS."
)
_TRUE = ("1", "true", "yes", "on")


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

    A cached copy is used without asking the hub; otherwise a short probe says within seconds
    whether the hub can be reached. Raises WeightsError saying where to get the file and how
    to pass it when it is not cached and cannot be downloaded.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = str(cache_dir) if cache_dir else None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    try:
        path = hf_hub_download(
            repo_id=REPO_ID, filename=FILENAME, cache_dir=cache, local_files_only=True
        )
    except LocalEntryNotFoundError:
        unreachable = "HF_HUB_OFFLINE is set" if offline else hub_unreachable()
        if unreachable:
            raise WeightsError(
                "The default ViT-L/14 weights are not downloaded and the hub cannot be reached "
                f"({unreachable}): {WHERE_HINT}{OFFLINE_HINT}"
            ) from None
        path = _download(cache)
    verify_sha256(path, expected)
    return Path(path)


def _download(cache: str | None) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id=REPO_ID, filename=FILENAME, cache_dir=cache)
    except LocalEntryNotFoundError:  # the network went away after the probe
        raise WeightsError(
            f"The default ViT-L/14 weights could not be downloaded: {WHERE_HINT}{OFFLINE_HINT}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - hub errors, disk full, ...: one line, not a trace
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(
            f"Could not download the default ViT-L/14 weights ({REPO_ID}/{FILENAME}: "
            f"{type(exc).__name__}: {first}): {WHERE_HINT}{OFFLINE_HINT}"
        ) from None


def hub_unreachable(timeout: float = PROBE_SECONDS) -> str | None:
    """None when the hub (or the proxy for it) accepts a TCP connection within `timeout`
    seconds, else why not; name lookup included, so a dead DNS cannot stall it either."""
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname or "", via.port or 80
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}: {exc.strerror or exc}")

    worker = threading.Thread(target=probe, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0] if outcome else f"{host}: no answer within {timeout:.0f} s"
