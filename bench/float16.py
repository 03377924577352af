"""What storing vectors as float16 in the catalog changes: cosines and top-10 neighbours.

The same synthetic vectors as bench/scale.py, kept as float32 and round-tripped through the
catalog's codec (float16 BLOB, read back re-normalized float32): the largest cosine change over
the planted near-duplicate pairs and over random pairs, and how many of each query's exact
top 10 stay the same.

    python bench/float16.py --n 100000
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scale import Synthetic

from indexer.store import vector_codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    gen = Synthetic(args.n, args.dim, seed=0)
    parts = [gen.batch(start, 5_000) for start in range(0, args.n, 5_000)]
    x = np.concatenate([p["vectors"] for p in parts]).astype(np.float32)
    pairs = np.array(
        [(5_000 * k + i, 5_000 * k + s) for k, p in enumerate(parts) for i, s in p["pairs"]]
    )
    half = vector_codec.decode([vector_codec.encode(v) for v in x], args.dim)
    rng = np.random.default_rng(1)
    rand = rng.integers(0, args.n, (20_000, 2))
    planted = np.abs(
        np.einsum("ij,ij->i", x[pairs[:, 0]], x[pairs[:, 1]])
        - np.einsum("ij,ij->i", half[pairs[:, 0]], half[pairs[:, 1]])
    )
    random = np.abs(
        np.einsum("ij,ij->i", x[rand[:, 0]], x[rand[:, 1]])
        - np.einsum("ij,ij->i", half[rand[:, 0]], half[rand[:, 1]])
    )
    queries = gen.points(np.random.default_rng([0, 1 << 40]), args.queries)
    top32 = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    top16 = np.argsort(-(queries @ half.T), axis=1)[:, :10]
    same = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(top32.tolist(), top16.tolist(), strict=True)]
    )
    print(
        json.dumps(
            {
                "n": args.n,
                "planted_pairs": len(pairs),
                "max_cosine_change_planted": float(planted.max()),
                "max_cosine_change_random": float(random.max()),
                "top10_overlap": round(float(same), 4),
                "bytes_per_vector": {"float32": 4 * args.dim, "float16": 2 * args.dim},
            }
        )
    )


if __name__ == "__main__":
    main()
