"""Decode and encode on a Ray cluster (`index build --engine ray`); the catalog stays local.

The driver scans, plans and commits exactly as the local engine does; only the decode → encode
middle runs as a Ray Data pipeline: stateless decode tasks (which hash the new files they read,
as local workers do), then a pool of encoder actors (one GPU each when the cluster has GPUs).
Results stream back in batches, committed one by one.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from indexer import imaging
from indexer.build.pipeline import DecodedBatch, DecodeJob, EncodedBatch, decode_one
from indexer.encoder.checkpoints import first_line
from indexer.errors import RayUnavailableError, SettingsError

PROBE_SECONDS = 5.0  # a head's GCS port answers at once; ray.init alone retries for minutes
ADDRESS_FORMS = "HOST:PORT (the head's ray start --port, 6379 by default), ray://HOST:PORT or auto"


def _decode_batch(batch: dict[str, np.ndarray], options: imaging.DecodeOptions) -> dict:
    """Ray map_batches stage: decode paths into uint8 crops plus metadata columns."""
    cols = ("key", "ok", "pixels", "meta", "phash", "error", "digest")
    out: dict[str, list] = {k: [] for k in cols}
    for key, path, size, mtime, hashed in zip(
        batch["key"], batch["path"], batch["size"], batch["mtime_ns"], batch["hash"], strict=True
    ):
        job = DecodeJob(
            str(key), str(path), int(size), int(mtime), hash_while_decoding=bool(hashed)
        )
        res = decode_one(job, options)
        ok = "pixels" in res
        out["key"].append(job.key)
        out["ok"].append(ok)
        out["pixels"].append(res["pixels"] if ok else np.zeros((224, 224, 3), np.uint8))
        meta = res.get("meta")
        out["meta"].append(
            [meta.width, meta.height, meta.format, meta.taken_at or "", meta.camera or ""]
            + [meta.pixels_from or ""]
            if ok
            else [0, 0, "", "", "", ""]
        )
        out["phash"].append(res.get("phash") or 0)  # 0: no hash (never an informative one)
        out["error"].append("\t".join(res["error"]) if not ok else "")
        out["digest"].append(res.get("digest") or "")
    return {
        "key": np.array(out["key"], dtype=object),
        "ok": np.array(out["ok"]),
        "pixels": np.stack(out["pixels"]),
        "meta": np.array(out["meta"], dtype=object),
        "phash": np.array(out["phash"], dtype=np.int64),
        "error": np.array(out["error"], dtype=object),
        "digest": np.array(out["digest"], dtype=object),
    }


class _EncoderActor:
    """Ray actor: loads the encoder once, encodes the decoded crops of each batch."""

    def __init__(self, weights: str, device: str, dtype: str) -> None:
        from indexer.encoder import load_encoder

        if device == "auto" and torch.cuda.is_available():
            device = "cuda"
        self.encoder = load_encoder(weights, device=device, dtype=dtype)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["ok"].astype(bool)
        vectors = np.zeros((len(ok), self.encoder.dim), np.float32)
        if ok.any():
            vectors[ok] = self.encoder.encode_uint8(np.ascontiguousarray(batch["pixels"][ok]))
        result = {k: v for k, v in batch.items() if k != "pixels"}
        result["vector"] = vectors
        return result


def encode_batches_ray(
    jobs: Sequence[DecodeJob],
    *,
    weights: str,
    device: str,
    dtype: str,
    batch_size: int,
    actors: int,
    options: imaging.DecodeOptions,
    address: str | None = None,
) -> Iterator[EncodedBatch]:
    """Same contract as `pipeline.encode_batches`, computed on Ray (results in any order)."""
    _import_ray()
    if not jobs:
        return
    ray = connect(address)
    cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = actors or max(1, cluster_gpus)
    items = [
        {
            "key": j.key,
            "path": j.path,
            "size": j.size or 0,
            "mtime_ns": j.mtime_ns or 0,
            "hash": j.hash_while_decoding,
        }
        for j in jobs
    ]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // batch_size, 64)))
    # Each decode task reserves the memory one decode may hold, so a node runs no more decodes
    # than fit; resources unlike the actors' also keep Ray Data from fusing decode into the
    # encoder actors (fused, a cluster without GPUs would decode on one CPU in all).
    ds = ds.map_batches(
        _decode_batch,
        fn_kwargs={"options": options},
        batch_size=batch_size,
        batch_format="numpy",
        memory=int(options.max_decode_mb * 2**20),
    )
    ds = ds.map_batches(
        _EncoderActor,
        fn_constructor_kwargs={"weights": weights, "device": device, "dtype": dtype},
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=max(1, actors),
        num_gpus=1 if cluster_gpus else 0,  # one GPU per encoder actor when there are GPUs
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield _to_encoded(batch)


def connect(address: str | None) -> Any:
    """The `ray` module, joined once per process to the cluster at `address` (None: a new
    local one). A malformed or unreachable address fails in one line within seconds."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    if address:
        _probe(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # connection and authentication errors vary by Ray version
        where = f" at {address}" if address else ""
        raise RayUnavailableError(f"cannot start or reach Ray{where}: {_reason(exc)}") from None
    return ray


def _reason(exc: BaseException) -> str:
    """Ray's first line, or what to do when the cluster refused us for want of its token (the
    first line then only says the connection failed)."""
    causes, cause = [], exc
    while cause is not None and len(causes) < 5:
        causes.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    if any("InvalidAuthToken" in text for text in causes):
        return (
            "the cluster wants its authentication token: set RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN (or ~/.ray/auth_token) here as on its nodes"
        )
    return first_line(exc)


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a `HOST:PORT` or `ray://HOST:PORT` address, None for `auto` / `local`;
    SettingsError for anything else (ray.init would misread it or wait on it)."""
    if address in ("auto", "local"):
        return None
    scheme, sep, rest = address.partition("://")
    host, _, port = (rest if sep else address).rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if (sep and scheme != "ray") or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"--ray-address {address!r}: use {ADDRESS_FORMS}")
    return host, int(port)


def _probe(address: str) -> None:
    """Refuse an address where nothing answers, before Ray retries it for minutes."""
    target = split_address(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=PROBE_SECONDS).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        flag = "--ray-client-server-port" if address.startswith("ray://") else "--port"
        raise RayUnavailableError(
            f"cannot reach the Ray cluster at {address}: {reason.lower()} "
            f"(is `ray start --head {flag} {target[1]}` running there?)"
        ) from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            "the Ray engine needs Ray: pip install 'photo-index[ray]'"
        ) from None
    return ray


def ray_map(fn: Any, args: list) -> list:
    """`map` over a Ray cluster (one task per argument), used to fill index shards."""
    import ray

    task = ray.remote(fn)
    return ray.get([task.remote(a) for a in args])


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1


def build_ivf_on_ray(index: Any, ids: np.ndarray, vecs: np.ndarray) -> None:
    """Fill an IVF `index` in shards over the Ray cluster (the same index as one pass): what
    the build hands `sync_index` when it runs on Ray."""
    index.build_sharded(ids, vecs, min(16, max(2, cluster_cpus())), ray_map)


def _to_encoded(batch: dict[str, Any]) -> EncodedBatch:
    decoded = DecodedBatch()
    rows = []
    for i, key in enumerate(batch["key"]):
        if bool(batch["ok"][i]):
            w, h, fmt, taken, camera, pixels_from = batch["meta"][i]
            decoded.keys.append(str(key))
            decoded.metas.append(
                imaging.ImageMeta(
                    int(w), int(h), str(fmt), taken or None, camera or None, pixels_from or None
                )
            )
            decoded.phashes.append(int(batch["phash"][i]) or None)
            decoded.digests.append(str(batch["digest"][i]) or None)
            rows.append(i)
        else:
            stage, reason = str(batch["error"][i]).split("\t", 1)
            decoded.failed.append((str(key), stage, reason))
    vectors = np.asarray(batch["vector"], dtype=np.float32)[rows]
    return EncodedBatch(decoded, vectors.reshape(len(rows), -1))
