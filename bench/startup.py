"""How fast the `index` command answers before it does any work: --help, --version, -h and a
subcommand's help against importing typer + rich alone (the yardstick: within 2x), and how fast
a build without weights fails offline. Whole processes, interleaved, medians; ratios in one run.

    python bench/startup.py                 # 15 rounds
    python bench/startup.py --rounds 31 --out bench/results/startup-cpu.md
    python bench/startup.py --baseline ../main   # also the same commands of another checkout

Also the slowest imports of `index --help` (python -X importtime), so a regression names its
module. The tests only check what --help imports (tests/test_cli_face.py), never seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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
# what any subcommand's help costs in Typer (it loads pydantic to read options): the yardstick
# for `index build --help`
TWO_COMMANDS = (
    "import sys, typer; app = typer.Typer(rich_markup_mode=None)\n"
    "@app.command()\ndef a(n: int = 1) -> None: pass\n"
    "@app.command()\ndef b(n: int = 1) -> None: pass\n"
    "app(sys.argv[1:])"
)
COMMANDS = {
    "python -c pass": [PY, "-c", "pass"],
    "import typer, rich (yardstick)": [PY, "-c", "import typer, rich"],
    "a two-command Typer app: b --help": [PY, "-c", TWO_COMMANDS, "b", "--help"],
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
    """Seconds `cmd` takes, run from the temp folder: `python -m` puts the current folder
    first on the path, which would shadow PYTHONPATH (and the baseline)."""
    start = time.perf_counter()
    kw.setdefault("cwd", tempfile.gettempdir())
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, **kw)
    return time.perf_counter() - start


def cpu(cmd: list[str], **kw) -> float:
    """User + system seconds of the command's process: steadier than wall time on a shared
    machine (waiting for a core is not counted)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall(cmd, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def startup(rounds: int, baseline: Path | None) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per command, the commands taking turns in every round; with
    `baseline` (another checkout, e.g. of main), its `index` commands too ("before: ...")."""
    runs = {name: (cmd, env()) for name, cmd in COMMANDS.items()}
    if baseline is not None:
        old = {**os.environ, "PYTHONPATH": str(baseline)}
        runs |= {f"before: {n}": (c, old) for n, c in COMMANDS.items() if n.startswith("index")}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for cmd, where in runs.values():  # warm the page cache once
        wall(cmd, env=where)
    for _ in range(rounds):
        for name, (cmd, where) in runs.items():
            start = time.perf_counter()
            used = cpu(cmd, env=where)
            times[name].append((time.perf_counter() - start, used))
    return {
        name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
        for name, t in times.items()
    }


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
    ap.add_argument("--baseline", type=Path, help="a checkout to compare with (before)")
    args = ap.parse_args()
    medians = startup(args.rounds, args.baseline)
    base_wall, base_cpu = medians[YARDSTICK]
    lines = [
        f"# Start-up, {os.cpu_count()} cores, python {platform.python_version()}",
        "",
        f"median of {args.rounds} interleaved runs, whole process (CPU: user + system)",
        "",
        "| command | wall s | / typer+rich | CPU s | / typer+rich |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {w:.3f} | {w / base_wall:.2f} | {c:.3f} | {c / base_cpu:.2f} |"
        for n, (w, c) in medians.items()
    ]
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
