"""Decode in worker processes, batch, encode on the device: the indexing hot path.

Workers ship uint8 224x224 crops (4x less than float) and the encoder normalizes on the
device; a DataLoader prefetches the next batches while the current one is being encoded.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from indexer import decoder_notes, files, imaging
from indexer.interrupts import deferred, ignore_stop_signals

ONE_READ_MAX = 64 << 20  # bytes: a `hash` job this size or smaller is read once into memory


@dataclass(frozen=True)
class DecodeJob:
    """One picture to decode: `key` is the caller's handle (e.g. the content hash).

    `hash_while_decoding`: also return the content hash of the bytes decoded (a new file is
    then read once).
    """

    key: str
    path: str
    size: int | None = None  # as scanned: a file rewritten since then is not embedded
    mtime_ns: int | None = None
    hash_while_decoding: bool = False


@dataclass
class DecodedBatch:
    """A batch out of the workers: pixels of the images that decoded, and the failures."""

    keys: list[str] = field(default_factory=list)
    pixels: torch.Tensor | None = None  # uint8 [n, 224, 224, 3]
    metas: list[imaging.ImageMeta] = field(default_factory=list)
    phashes: list[int | None] = field(default_factory=list)  # None: a flat picture, no pHash
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (key, stage, reason)
    digests: list[str | None] = field(default_factory=list)  # content hashes of `hash` jobs
    notes: list[tuple[str, list[str]]] = field(default_factory=list)  # (path, decoder's words)

    def split(self, n: int) -> tuple[DecodedBatch, DecodedBatch]:
        """The first n images (with all the failures) and the rest."""
        px = self.pixels
        head = DecodedBatch(
            self.keys[:n], None if px is None else px[:n], self.metas[:n], self.phashes[:n],
            self.failed, self.digests[:n], self.notes,
        )  # fmt: skip
        rest = DecodedBatch(
            self.keys[n:], None if px is None or len(px) <= n else px[n:], self.metas[n:],
            self.phashes[n:], [], self.digests[n:], [],
        )  # fmt: skip
        return head, rest


@dataclass
class EncodedBatch:
    """A decoded batch plus its L2-normalized projections (row i belongs to keys[i])."""

    decoded: DecodedBatch
    vectors: np.ndarray


class _DecodeDataset(Dataset):
    def __init__(self, jobs: Sequence[DecodeJob], options: imaging.DecodeOptions) -> None:
        self.jobs = list(jobs)
        self.options = options

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return decode_one(self.jobs[i], self.options)


class _DecodeTimeout(BaseException):  # not swallowed by `except Exception`
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _DecodeTimeout


def decode_one(
    job: DecodeJob, options: imaging.DecodeOptions = imaging.DecodeOptions()
) -> dict[str, Any]:
    """Open, preprocess to uint8 and hash perceptually; errors come back as data, not raises.

    With `options.timeout` (seconds, main thread of a process only) a decode that runs longer
    is abandoned and reported, so one pathological file cannot hang a build.
    """
    timeout = options.timeout
    armed = timeout > 0 and threading.current_thread() is threading.main_thread()
    if armed:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return _decode(job, options)
    except _DecodeTimeout:
        return {"key": job.key, "error": ("decode", f"decoding took longer than {timeout:g} s")}
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _changed(job: DecodeJob, size: int, mtime_ns: int) -> None:
    if job.size is not None and (size, mtime_ns) != (job.size, job.mtime_ns):
        raise imaging.ImageError(
            job.path, "read", "file changed during the build; the next build indexes it"
        )


def _read(job: DecodeJob) -> tuple[str | bytes, str | None]:
    """What to decode (the path, or the bytes read once) and, for `hash` jobs, their hash."""
    if not job.hash_while_decoding:
        if job.size is not None:
            st = os.stat(job.path)
            _changed(job, st.st_size, st.st_mtime_ns)
        return job.path, None
    try:
        with files.open_regular(job.path) as fh:
            st = os.fstat(fh.fileno())
            _changed(job, st.st_size, st.st_mtime_ns)
            if st.st_size > ONE_READ_MAX:  # too big to hold: hash by streaming, decode the path
                return job.path, files.content_hash(job.path)
            data = fh.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise imaging.ImageError(job.path, "read", f"cannot read: {exc.strerror or exc}") from None
    _changed(job, len(data), st.st_mtime_ns)
    return data, files.file_digest(data)


def _decode(job: DecodeJob, options: imaging.DecodeOptions) -> dict[str, Any]:
    """`_decode_caught`, with what the decoders said about the picture (`notes`: its path and
    their words) instead of on stderr."""
    with decoder_notes.caught() as notes:
        result = _decode_caught(job, options)
    if notes and "error" not in result:
        result["notes"] = (job.path, notes)
    return result


def _decode_caught(job: DecodeJob, options: imaging.DecodeOptions) -> dict[str, Any]:
    try:
        source, digest = _read(job)
        img, meta = imaging.open_image(source, options, name=job.path)
        pixels = imaging.to_uint8(img)
        phash = imaging.perceptual_hash(img)
    except imaging.ImageError as exc:
        return {"key": job.key, "error": (exc.stage, exc.reason)}
    except FileNotFoundError:
        return {"key": job.key, "error": ("read", "file disappeared before it could be decoded")}
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not stop a run
        return {"key": job.key, "error": ("decode", f"{type(exc).__name__}: {exc}")}
    return {"key": job.key, "pixels": pixels, "meta": meta, "phash": phash, "digest": digest}


def _collate(samples: list[dict[str, Any]]) -> DecodedBatch:
    batch = DecodedBatch()
    arrays = []
    for s in samples:
        if "error" in s:
            batch.failed.append((s["key"], *s["error"]))
        else:
            batch.keys.append(s["key"])
            arrays.append(s["pixels"])
            batch.metas.append(s["meta"])
            batch.phashes.append(s["phash"])
            batch.digests.append(s.get("digest"))
            if "notes" in s:
                batch.notes.append(s["notes"])
    if arrays:
        batch.pixels = torch.from_numpy(np.stack(arrays))
    return batch


def _join(parts: list[DecodedBatch]) -> DecodedBatch:
    out = DecodedBatch()
    pixels = [p.pixels for p in parts if p.pixels is not None]
    for p in parts:
        out.keys += p.keys
        out.metas += p.metas
        out.phashes += p.phashes
        out.failed += p.failed
        out.digests += p.digests
        out.notes += p.notes
    if pixels:
        out.pixels = pixels[0] if len(pixels) == 1 else torch.cat(pixels)
    return out


def _worker_init(_worker_id: int) -> None:
    """Decode workers leave Ctrl-C and SIGTERM to the parent, which shuts them down; a parent
    that stops while a batch is in transfer cuts the connection on which this worker passes the
    batch's shared memory, and that EOF (reported through sys.excepthook by multiprocessing's
    resource sharer) is not an error worth a traceback on the user's terminal."""
    ignore_stop_signals()
    default_hook = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if not issubclass(exc_type, (EOFError, ConnectionError)):
            default_hook(exc_type, exc, tb)

    sys.excepthook = hook


WORKER_CHUNK = 16  # images per worker task: small, so every worker stays busy to the end
BUILD_DECODE = imaging.DecodeOptions(draft=True)  # default limits, JPEG draft, no timeout


def decoded_batches(
    jobs: Sequence[DecodeJob],
    *,
    batch_size: int,
    workers: int,
    options: imaging.DecodeOptions = BUILD_DECODE,
) -> Iterator[DecodedBatch]:
    """Decode `jobs` with `workers` processes (0 = in this process: no timeout), in order, in
    batches.

    Workers decode chunks of WORKER_CHUNK images (a whole encoder batch per worker would leave
    most workers idle on the last rounds); chunks are regrouped here into batches of exactly
    `batch_size` images (the last one smaller); failures ride with the batch they arrive in.
    """
    if not jobs:
        return
    dataset = _DecodeDataset(jobs, options if workers > 0 else replace(options, timeout=0))
    imaging.preload()
    loader = DataLoader(
        dataset,
        batch_size=max(1, min(batch_size, WORKER_CHUNK)),
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=False,  # regrouped below; the encoder pins what it sends to a GPU
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
        worker_init_fn=_worker_init if workers > 0 else None,
    )
    parts: list[DecodedBatch] = []
    count = 0
    chunks = iter(loader)
    try:
        for chunk in chunks:
            parts.append(chunk)
            count += len(chunk.keys)
            while count >= batch_size:
                head, rest = _join(parts).split(batch_size)
                yield head
                parts, count = [rest], len(rest.keys)
        if count or any(p.failed for p in parts):
            yield _join(parts)
    finally:  # closed early (an interrupt): stop the workers now, not when garbage collected
        shutdown = getattr(chunks, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def encode_batches(
    encoder: Any,
    jobs: Sequence[DecodeJob],
    *,
    batch_size: int,
    workers: int,
    options: imaging.DecodeOptions = BUILD_DECODE,
    clock: dict[str, float] | None = None,
) -> Iterator[EncodedBatch]:
    """Decode and encode: yields every batch (failures included) with its vectors, in order.

    Batches go to the encoder's replicas (one per device) in turn from a thread each, so the
    devices run while this thread collates the next batch and the caller commits the last.
    `clock` gets seconds "decode_wait" (this thread waiting for the workers), "encoding"
    (summed over the devices) and "encode_wait" (waiting for a device): which stage bounds.
    """
    clock = {} if clock is None else clock
    for name in ("decode_wait", "encoding", "encode_wait"):
        clock.setdefault(name, 0.0)
    replicas = getattr(encoder, "replicas", None) or [encoder]
    for replica in replicas:
        if hasattr(replica, "warm_up"):
            replica.warm_up(batch_size)
    decoded = decoded_batches(jobs, batch_size=batch_size, workers=workers, options=options)
    pending: deque[tuple[DecodedBatch, Future | None]] = deque()
    pool = ThreadPoolExecutor(max_workers=len(replicas))
    try:
        for i, batch in enumerate(_timed(decoded, clock)):
            replica = replicas[i % len(replicas)]
            future = None
            if batch.pixels is not None:
                future = pool.submit(_encode, replica, batch.pixels)
            pending.append((batch, future))
            while len(pending) > len(replicas):  # one batch queued behind each busy device
                yield _finish(encoder, *pending.popleft(), clock)
        while pending:
            yield _finish(encoder, *pending.popleft(), clock)
    finally:  # on an interrupt: stop decoding, drop queued batches, wait for the running ones
        with deferred():  # a second Ctrl-C waits for this, not leaving threads mid-batch
            decoded.close()
            pool.shutdown(wait=True, cancel_futures=True)


def _timed(batches: Iterator[DecodedBatch], clock: dict[str, float]) -> Iterator[DecodedBatch]:
    while True:
        start = time.perf_counter()
        batch = next(batches, None)
        clock["decode_wait"] += time.perf_counter() - start
        if batch is None:
            return
        yield batch


def _encode(replica: Any, pixels: torch.Tensor) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    vectors = replica.encode_uint8(pixels)
    return vectors, time.perf_counter() - start


def _finish(
    encoder: Any, batch: DecodedBatch, future: Future | None, clock: dict[str, float]
) -> EncodedBatch:
    if future is None:
        return EncodedBatch(batch, np.zeros((0, encoder.dim), np.float32))
    start = time.perf_counter()
    vectors, seconds = future.result()
    clock["encode_wait"] += time.perf_counter() - start
    clock["encoding"] += seconds
    return EncodedBatch(batch, vectors)
