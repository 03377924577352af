"""Matrix work on a torch device for faiss-cpu installs: IVF k-means, cell assignment, and the
exact cosine join for dedup. On a GPU these take seconds where CPU FAISS takes minutes.

Everything takes and returns numpy; `device` is a torch device string ("cuda", "cuda:1", "cpu").
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ASSIGN_BLOCK = 1 << 16  # vectors per assignment product
JOIN_ROWS = 8192  # query rows per cosine-join product
JOIN_COLS = 1 << 16  # columns per cosine-join product (8192 x 65536 halves = 1 GB)
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # small GPUs
JOIN_MARGIN = 0.01  # half-precision candidates within this of the threshold are re-scored


def spherical_kmeans(
    x: np.ndarray, k: int, device: str, iterations: int = 10, seed: int = 0
) -> np.ndarray:
    """Unit-norm centroids of k clusters of the unit vectors x (Lloyd on cosine), float32."""
    gen = torch.Generator().manual_seed(seed)
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    k = min(k, len(xs))
    c = xs[torch.randperm(len(xs), generator=gen)[:k].to(device)].clone()
    for _ in range(iterations):
        labels = _nearest(xs, c)
        sums = torch.zeros_like(c).index_add_(0, labels, xs)
        counts = torch.bincount(labels, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):  # restart empty clusters on random points
            pick = torch.randint(0, len(xs), (len(empty),), generator=gen).to(device)
            sums[empty] = xs[pick]
        c = F.normalize(sums, dim=1)
    return c.cpu().numpy()


def assign(x: np.ndarray, centroids: np.ndarray, device: str) -> np.ndarray:
    """int64 [n]: each vector's most similar centroid (inner product), in blocks."""
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32)).to(device)
    out = np.empty(len(x), np.int64)
    for start in range(0, len(x), ASSIGN_BLOCK):
        block = torch.from_numpy(np.ascontiguousarray(x[start : start + ASSIGN_BLOCK]))
        out[start : start + len(block)] = _nearest(block.to(device, torch.float32), c).cpu()
    return out


def _nearest(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    step = max(1, (1 << 27) // max(1, len(c)))  # at most 512 MB of scores at a time
    return torch.cat([(x[s : s + step] @ c.T).argmax(dim=1) for s in range(0, len(x), step)])


def join_fits(device: str, shape: tuple[int, ...]) -> bool:
    """Would cosine_join's half-precision copy and tiles fit in the device's free memory?"""
    dev = torch.device(device)
    if dev.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(dev)
    need = shape[0] * shape[1] * 2 + JOIN_ROWS * JOIN_COLS * 4  # vectors + products + masks
    return need < 0.8 * free


def cosine_join(
    x: np.ndarray, threshold: float, device: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of unit vectors with cosine ≥ threshold: exact, no N×N matrix.

    Upper-triangle tiles in half precision on a GPU (float32 elsewhere) give candidates within
    JOIN_MARGIN of the threshold; candidates are re-scored in float32 on the CPU.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    half = torch.device(device).type == "cuda"
    xs = torch.from_numpy(x).to(device, torch.float16 if half else torch.float32)
    cut = threshold - (JOIN_MARGIN if half else 1e-6)
    rows_i: list[np.ndarray] = []
    cols_j: list[np.ndarray] = []
    with torch.inference_mode():
        for r0 in range(0, n, JOIN_ROWS):
            q = xs[r0 : r0 + JOIN_ROWS]
            for c0 in range(r0, n, JOIN_COLS):
                hit = (q @ xs[c0 : c0 + JOIN_COLS].T) >= cut
                if c0 == r0:  # the diagonal tile: only j > i
                    hit &= torch.ones_like(hit).triu_(1)
                nz = torch.nonzero(hit).cpu().numpy()
                if len(nz):
                    rows_i.append(nz[:, 0] + r0)
                    cols_j.append(nz[:, 1] + c0)
    if not rows_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    i = np.concatenate(rows_i).astype(np.int64)
    j = np.concatenate(cols_j).astype(np.int64)
    score = np.empty(len(i), np.float32)
    step = 1 << 20  # candidates re-scored at a time
    for s in range(0, len(i), step):
        score[s : s + step] = np.einsum("ij,ij->i", x[i[s : s + step]], x[j[s : s + step]])
    keep = score >= threshold
    return i[keep], j[keep], score[keep]
