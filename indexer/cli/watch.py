"""`index watch`: build, then keep the index current as photos arrive, change, move or go;
one line per run (or one `--json` object per run) until Ctrl-C or SIGTERM (exit 130/143).

Light at import: the watcher (watchdog, the build, SQLAlchemy) loads inside the command.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.cli.build import (
    BatchSizeOpt,
    CompileOpt,
    EngineOpt,
    ExcludeOpt,
    MaxDecodeMbOpt,
    MaxFileMbOpt,
    MaxMegapixelsOpt,
    MemoryBudgetOpt,
    Progress,
    PruneOpt,
    RayAddressOpt,
    ReindexOpt,
    RetryFailedOpt,
    WorkersOpt,
    build_settings,
    counts_line,
)
from indexer.cli.common import DeviceOpt, IndexOpt, WeightsOpt, run
from indexer.text import plural, printable

SettleOpt = Annotated[float, typer.Option(help="Seconds without a new change before a run starts.")]
MaxWaitOpt = Annotated[
    float, typer.Option(help="Start a run at most this many seconds after the first change.")
]
ObserverOpt = Annotated[
    str,
    typer.Option(help="auto (polling on network file systems, else events) | events | polling"),
]
PollIntervalOpt = Annotated[
    float, typer.Option(help="Seconds between two polls of a polled folder.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
JsonLinesOpt = Annotated[bool, typer.Option("--json", help="One JSON object per run on stdout.")]


def watch_command(
    paths: Annotated[list[Path], typer.Argument(help="Folders (or files) to index and watch.")],
    index: IndexOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = None,
    compile: CompileOpt = None,
    max_megapixels: MaxMegapixelsOpt = None,
    max_decode_mb: MaxDecodeMbOpt = None,
    max_file_mb: MaxFileMbOpt = None,
    exclude: ExcludeOpt = None,
    memory_budget_mb: MemoryBudgetOpt = None,
    reindex: ReindexOpt = False,
    retry_failed: RetryFailedOpt = False,
    prune: PruneOpt = False,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    settle: SettleOpt = 3.0,
    max_wait: MaxWaitOpt = 60.0,
    observer: ObserverOpt = "auto",
    poll_interval: PollIntervalOpt = 30.0,
    quiet: QuietOpt = False,
    as_json: JsonLinesOpt = False,
) -> None:
    """Index, then keep indexing as photos arrive, change, move or go (Ctrl-C to stop)."""
    from indexer.watch import Watcher, WatchOptions

    settings = build_settings(
        index, weights, device, batch_size, workers, compile, max_megapixels, max_decode_mb,
        max_file_mb, exclude, memory_budget_mb, engine, ray_address,
    )  # fmt: skip
    options = WatchOptions(
        settle=settle, max_wait=max_wait, observer=observer, poll_interval=poll_interval
    )
    bar = Progress(enabled=not quiet and sys.stderr.isatty())  # the first run's

    def on_run(done: Any) -> None:
        bar.close()
        _print_run(done, as_json)

    watcher = Watcher(
        paths, settings, options, reindex=reindex, retry_failed=retry_failed, prune=prune,
        on_run=on_run, on_note=lambda m: typer.echo(printable(m), err=True), progress=bar,
    )  # fmt: skip
    try:
        _watch_until_stopped(watcher)
    finally:
        bar.close()


def _watch_until_stopped(watcher: Any) -> None:
    """Run the watcher; after Ctrl-C or SIGTERM (it saved its work), exit 130 / 143."""
    from indexer.interrupts import raising_on, signum_of

    try:
        with raising_on([signal.SIGTERM]):
            run(watcher.run, watcher.settings.index)
    except KeyboardInterrupt as exc:
        for s in (signal.SIGINT, signal.SIGTERM):  # all is saved: another one ends us at once
            signal.signal(s, signal.SIG_DFL)
        typer.echo(
            "stopped watching: every committed batch is kept; what was left continues at the "
            "next `index watch` or `index build`",
            err=True,
        )
        raise typer.Exit(128 + signum_of(exc)) from None


def _print_run(done: Any, as_json: bool) -> None:
    """One run: its warnings on stderr, then one line (or one JSON object) on stdout."""
    for line in done.summary.warnings:
        typer.echo(f"warning: {printable(line)}", err=True)
    d = done.as_dict()
    if as_json:
        typer.echo(json.dumps(d))
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["started_at"]))
    why = d["trigger"] if not d["events"] else f"{d['trigger']} ({plural(d['events'], 'event')})"
    cut = f" · interrupted ({d['interrupted']})" if d["interrupted"] else ""
    images = plural(d["images"], "image")
    typer.echo(f"{when} {why}: {counts_line(d)} · {images} · {d['seconds']:.1f} s{cut}")
