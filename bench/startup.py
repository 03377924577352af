"""How fast the `index` command answers before it does any work: --help, --version, -h and a
subcommand's help against importing typer + rich alone (the yardstick: within 2x), and how fast
a build without weights fails offline. Whole processes, interleaved, medians; ratios in one run.

    python bench/startup.py                 # 15 rounds
    python bench/startup.py --rounds 31 --out bench/results/startup-cpu.md

Also the slowest imports of `index --help` (python -X importtime), so a regression names its
module. The tests only check what --help imports (tests/test_cli_face.py), never seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLI = [PY, "-m", "indexer.cli"]
COMMANDS = {
    "python -c pass": [PY, "-c", "pass"],
    "import typer, rich (yardstick)": [PY, "-c", "import typer, rich"],
    "index --help": [*CLI, "--help"],
    "index -h": [*CLI, "-h"],
    "index --version": [*CLI, "--version"],
    "index build --help": [*CLI, "build", "--help"],
    "index search --help": [*CLI, "search", "--help"],
}
YARDSTICK = "import typer, rich (yardstick)"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def wall(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, **kw)
    return time.perf_counter() - start


def startup(rounds: int) -> dict[str, float]:
    """Median seconds per command, the commands taking turns in every round."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for cmd in COMMANDS.values():  # warm the page cache once
        wall(cmd, env=env())
    for _ in range(rounds):
        for name, cmd in COMMANDS.items():
            times[name].append(wall(cmd, env=env()))
    return {name: statistics.median(t) for name, t in times.items()}


def offline_build(rounds: int) -> dict[str, float]:
    """Median seconds for `index build` with no weights, no cache and no network to fail."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        shutil.copy(ROOT / "tests" / "fixtures" / "photos" / "flat" / "cat.jpg", photos)
        for why, extra in (
            ("HF_HUB_OFFLINE=1", {"HF_HUB_OFFLINE": "1"}),
            ("hub unreachable (127.0.0.1:9)", {"HF_ENDPOINT": "http://127.0.0.1:9"}),
        ):
            clean = {k: v for k, v in env().items() if not k.startswith(("HF_", "PHOTO_INDEX_"))}
            clean |= {"HF_HOME": str(Path(tmp) / "hf"), **extra}
            cmd = [*CLI, "build", str(photos), "--index", str(Path(tmp) / "i"), "-q"]
            out[why] = statistics.median(wall(cmd, env=clean) for _ in range(rounds))
    return out


def slowest_imports(top: int = 8) -> list[tuple[str, float]]:
    """(module, cumulative ms) of the slowest imports of `index --help`."""
    proc = subprocess.run(
        [PY, "-X", "importtime", "-m", "indexer.cli", "--help"],
        capture_output=True,
        text=True,
        env=env(),
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1]) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--offline-rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = ap.parse_args()
    medians = startup(args.rounds)
    base = medians[YARDSTICK]
    lines = [
        f"# Start-up, {os.cpu_count()} cores, python {platform.python_version()}",
        "",
        f"median of {args.rounds} interleaved runs, whole process",
        "",
        "| command | median s | / typer+rich |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {s:.3f} | {s / base:.2f} |" for n, s in medians.items()]
    lines += ["", "| offline build without weights | median s |", "|---|---|"]
    lines += [f"| {why} | {s:.2f} |" for why, s in offline_build(args.offline_rounds).items()]
    lines += ["", "| slowest imports of `index --help` | cumulative ms |", "|---|---|"]
    lines += [f"| `{m.strip()}` | {ms:.1f} |" for m, ms in slowest_imports()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
