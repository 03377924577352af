"""The default ViT-L/14 weights: download once from the Hugging Face hub, verify sha256 once.

Two pinned files go through this one mechanism: the Birder image tower the index is built with
(`IMAGE`) and OpenAI's full CLIP ViT-L/14, whose text tower answers text queries (`TEXT`).
The verification is remembered in a marker beside the cached file (keyed by size and mtime), so
later runs do not re-hash 1.2-1.7 GB. Offline without a cached copy gives a message within
seconds (a short connection probe, not the hub client's retries), not a trace.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from indexer.atomic import write_atomic
from indexer.encoder.checkpoints import sha256_file
from indexer.errors import WeightsError


@dataclass(frozen=True)
class HubFile:
    """One pinned file on the hub: where it is, its sha256, and how to do without it."""

    what: str  # "ViT-L/14 weights": named in every message
    repo_id: str
    filename: str
    revision: str  # a branch or, better, a commit: what the sha256 was taken of
    sha256: str
    size: str  # for the messages: "1.2 GB"
    dim: int  # the width it projects to: the default text tower is offered to indexes of this
    offline_hint: str  # how to pass a copy instead

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    @property
    def where_hint(self) -> str:
        where = f"download {self.filename} ({self.size}) from {self.url}"
        return f"{where} where there is network, then "


IMAGE = HubFile(
    what="ViT-L/14 weights",
    repo_id="birder-project/vit_l14_pn_quick_gelu_openai-clip",
    filename="vit_l14_pn_quick_gelu_openai-clip.pt",
    revision="main",
    sha256="2c7462390956d8942de0df21d9d1a43cf53fdbe3a3570a1add64d859313a0bee",
    size="1.2 GB",
    dim=768,
    offline_hint=(
        "pass --weights PATH (Birder .pt, open_clip/OpenAI state dict, OpenAI ViT-L-14.pt, or a "
        "Hugging Face CLIP folder) or set PHOTO_INDEX_WEIGHTS."
    ),
)
# OpenAI's CLIP ViT-L/14 as a Hugging Face CLIPModel (both towers, fp32, 1,710,540,580 bytes):
# the same OpenAI weights the Birder file converts, so its text tower pairs with IMAGE.
TEXT = HubFile(
    what="ViT-L/14 text weights",
    repo_id="openai/clip-vit-large-patch14",
    filename="model.safetensors",
    revision="32bd64288804d66eefd0ccbe215aa642df71cc41",
    sha256="a2bf730a0c7debf160f7a6b50b3aaf3703e7e88ac73de7a314903141db026dcb",
    size="1.7 GB",
    dim=768,
    offline_hint=(
        "pass --text-weights PATH (that file, a Hugging Face CLIPModel folder, an open_clip "
        "state dict or OpenAI ViT-L-14.pt) or set PHOTO_INDEX_TEXT_WEIGHTS."
    ),
)
PROBE_SECONDS = 3.0  # how long the hub may take to accept a connection before we call it offline
_TRUE = ("1", "true", "yes", "on")


def marker_path(path: Path) -> Path:
    """Where a successful check of `path` is remembered: `<file>.sha256-ok` beside it."""
    return path.with_name(path.name + ".sha256-ok")


def verify_sha256(path: str | Path, expected: str | None = None, spec: HubFile = IMAGE) -> None:
    """Check `path` against `expected` (default: `spec`'s sha256) once; a marker remembers a
    success for this size+mtime. A mismatch raises WeightsError and deletes nothing."""
    path = Path(path)
    expected = expected or spec.sha256
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
            f"damaged or is not the {spec.what} file {spec.filename}; nothing was deleted - "
            "remove that file and run again to download it afresh, or " + spec.offline_hint
        )
    try:
        write_atomic(marker, json.dumps(stamp))
    except OSError:  # a read-only cache still works, it just re-verifies next time
        pass


def default_weights(cache_dir: str | Path | None = None, spec: HubFile = IMAGE) -> Path:
    """Path of the verified pinned file `spec`, downloading it unless HF_HUB_OFFLINE is set.

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
            repo_id=spec.repo_id,
            filename=spec.filename,
            revision=spec.revision,
            cache_dir=cache,
            local_files_only=True,
        )
    except LocalEntryNotFoundError:
        unreachable = "HF_HUB_OFFLINE is set" if offline else hub_unreachable()
        if unreachable:
            raise WeightsError(
                f"The default {spec.what} are not downloaded and the hub cannot be reached "
                f"({unreachable}): {spec.where_hint}{spec.offline_hint}"
            ) from None
        path = _download(cache, spec)
    verify_sha256(path, spec=spec)
    return Path(path)


def _download(cache: str | None, spec: HubFile) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    hint = spec.where_hint + spec.offline_hint
    try:
        return hf_hub_download(
            repo_id=spec.repo_id, filename=spec.filename, revision=spec.revision, cache_dir=cache
        )
    except LocalEntryNotFoundError:  # the network went away after the probe
        raise WeightsError(f"The default {spec.what} could not be downloaded: {hint}") from None
    except Exception as exc:  # noqa: BLE001 - hub errors, disk full, ...: one line, not a trace
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(
            f"Could not download the default {spec.what} ({spec.repo_id}/{spec.filename}: "
            f"{type(exc).__name__}: {first}): {hint}"
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
