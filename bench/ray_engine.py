"""Local engine vs Ray engine on the same folder and machine: the overhead ratio (table).

python bench/ray_engine.py --n 300            # tiny weights
python bench/ray_engine.py --n 48 --vit-l     # random full-size ViT-L/14
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from pipeline import FIXTURES, make_jpegs

from indexer.build import build
from indexer.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--vit-l", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        weights = str(FIXTURES / "clip-vit-tiny/tiny_birder.pt")
        if args.vit_l:
            from indexer.encoder import save_random_checkpoint

            weights = str(save_random_checkpoint(tmpdir / "vit_l.safetensors"))
        w, h = (int(v) for v in args.size.split("x"))
        make_jpegs(tmpdir / "pics", args.n, (w, h))
        local = Settings.from_env(
            env={}, index=tmpdir / "local", weights=weights, batch_size=args.batch, workers=2
        )
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start
        times = {}
        for name, settings in (
            ("local", local),
            ("ray", replace(local, index=tmpdir / "ray", engine="ray")),
        ):
            summary = build([tmpdir / "pics"], settings)
            times[name] = summary.seconds
        ray.shutdown()
    print(f"{args.n} JPEGs {args.size}, weights {Path(weights).name}, 2 CPUs")
    print(f"local engine build (s)   {times['local']:.1f}")
    print(f"ray engine build (s)     {times['ray']:.1f}  (+ {ray_start:.1f} s to start Ray)")
    print(f"overhead ratio ray/local {times['ray'] / times['local']:.2f}")


if __name__ == "__main__":
    main()
