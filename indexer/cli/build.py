"""`index build`: parse options, run the build, render its summary (or what an interrupted
build saved); exit 3 on new failures or warnings, 130/143 after Ctrl-C/SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.cli.common import (
    EXIT_SOME_FAILED,
    DeviceOpt,
    IndexOpt,
    JsonOpt,
    WeightsOpt,
    run,
)
from indexer.settings import Settings
from indexer.text import plural, printable

QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar; the summary in one line.")
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Say what the decoder said about each picture.")
]


# The options `index build` and `index watch` share (defined once, listed in both signatures).
BatchSizeOpt = Annotated[int | None, typer.Option(help="Images per encoder batch.")]
WorkersOpt = Annotated[int | None, typer.Option(help="Decode processes [default: cores].")]
CompileOpt = Annotated[
    bool | None,
    typer.Option("--compile/--no-compile", help="torch.compile the encoder (GPU boxes)."),
]
MaxMegapixelsOpt = Annotated[float | None, typer.Option(help="Refuse larger images.")]
MaxDecodeMbOpt = Annotated[
    float | None,
    typer.Option(help="Refuse images whose decode needs more memory (MiB) [default 768]."),
]
MaxFileMbOpt = Annotated[
    float | None,
    typer.Option(help="Refuse longer files unread, and sparse ones (MiB) [default 2048]."),
]
ExcludeOpt = Annotated[
    list[str] | None, typer.Option(help="Folder name to skip (repeatable; replaces defaults).")
]
MemoryBudgetOpt = Annotated[
    float | None, typer.Option(help="Compress vectors (SQ8/PQ) to fit this many MB.")
]
ReindexOpt = Annotated[bool, typer.Option(help="Re-embed everything with new weights.")]
RetryFailedOpt = Annotated[bool, typer.Option(help="Try files in the ledger again.")]
PruneOpt = Annotated[
    bool,
    typer.Option(
        help="Also remove indexed files under roots or folders that are missing, empty or "
        "unreadable, and a large share of a root gone at once (kept otherwise)."
    ),
]
EngineOpt = Annotated[str | None, typer.Option(help="local | ray (decode+encode on Ray)")]
RayAddressOpt = Annotated[
    str | None, typer.Option(help="Ray cluster address [default: start one here]")
]


def build_settings(
    index: Path | None,
    weights: str | None,
    device: str | None,
    batch_size: int | None,
    workers: int | None,
    compile: bool | None,
    max_megapixels: float | None,
    max_decode_mb: float | None,
    max_file_mb: float | None,
    exclude: list[str] | None,
    memory_budget_mb: float | None,
    engine: str | None,
    ray_address: str | None,
) -> Settings:
    """Settings from the shared build options (flags > PHOTO_INDEX_* > defaults)."""
    return Settings.from_env(
        index=index,
        weights=weights,
        device=device,
        batch_size=batch_size,
        workers=workers,
        compile=compile,
        max_megapixels=max_megapixels,
        max_decode_mb=max_decode_mb,
        max_file_mb=max_file_mb,
        excludes=tuple(exclude) if exclude else None,
        memory_budget_mb=memory_budget_mb,
        engine=engine,
        ray_address=ray_address,
    )


def build_command(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index.")],
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
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Index photos: new and changed files are embedded, moved ones relinked, deleted removed."""
    settings = build_settings(
        index, weights, device, batch_size, workers, compile, max_megapixels, max_decode_mb,
        max_file_mb, exclude, memory_budget_mb, engine, ray_address,
    )  # fmt: skip
    flags = {"reindex": reindex, "retry_failed": retry_failed, "prune": prune}
    bar = Progress(enabled=not quiet and not as_json, verbose=verbose)
    summary, stopped = _build_until_stopped(paths, settings, flags, bar)
    _render_build(summary, stopped, as_json=as_json, quiet=quiet)


def _build_until_stopped(
    paths: list[Path], settings: Settings, flags: dict[str, bool], bar: Progress
) -> tuple[Any, KeyboardInterrupt | None]:
    """(summary, the interrupt that stopped it or None): SIGTERM takes Ctrl-C's path, and an
    interrupted build's summary is what it saved (`exc.result`)."""
    from indexer.build import build as run_build
    from indexer.interrupts import raising_on

    try:
        with raising_on([signal.SIGTERM]):
            return run(
                partial(run_build, paths, settings, progress=bar, **flags), settings.index
            ), None
    except KeyboardInterrupt as exc:
        return getattr(exc, "result", None), exc
    finally:
        bar.close()


def _render_build(
    summary: Any, stopped: KeyboardInterrupt | None, *, as_json: bool, quiet: bool
) -> None:
    """Print a build's summary; exit 130/143 after Ctrl-C/SIGTERM, 3 if files failed."""
    from indexer.interrupts import signum_of

    for line in summary.warnings if summary is not None else ():
        typer.echo(f"warning: {printable(line)}", err=True)
    if summary is not None and as_json:
        typer.echo(json.dumps(summary.as_dict()))
    elif summary is not None:
        (_print_line if quiet else _print_build)(summary.as_dict())
    if stopped is not None:
        for s in (signal.SIGINT, signal.SIGTERM):  # all is saved: another one ends us at once
            signal.signal(s, signal.SIG_DFL)
        if summary is None:  # before the build began, or a second signal cut its saving short
            done = "every committed batch is kept (the next build also updates the FAISS file)"
        elif summary.to_embed:
            done = f"{summary.embedded} of {summary.to_embed} new images embedded and saved"
        else:
            done = "stopped before embedding, nothing lost"
        typer.echo(f"interrupted: {done}; run the same `index build` again to continue", err=True)
        raise typer.Exit(128 + signum_of(stopped))
    if summary.failed or summary.warnings:
        raise typer.Exit(EXIT_SOME_FAILED)


class Progress:
    """tqdm on stderr: images/s, ETA, skipped and failed counts; and, bar or not, one
    `warning:` line per picture whose decoder warned (its words with `verbose`)."""

    def __init__(self, enabled: bool, verbose: bool = False) -> None:
        self.enabled = enabled
        self.verbose = verbose
        self.bar: Any = None

    def __call__(self, event: str, **fields: Any) -> None:
        if event == "decoder-warning":
            from indexer.decoder_notes import warning_line

            line = "warning: " + printable(
                warning_line(fields["path"], fields["notes"], self.verbose)
            )
            if self.bar is not None:
                self.bar.write(line, file=sys.stderr)
            else:
                typer.echo(line, err=True)
            return
        if not self.enabled:
            return
        if event == "scan":
            typer.echo(f"found {plural(fields['found'], 'image')}", err=True)
        elif event == "embed-start" and fields["total"]:
            from tqdm import tqdm

            self.bar = tqdm(total=fields["total"], unit="img", desc="embedding", file=sys.stderr)
        elif event == "embed" and self.bar is not None:
            self.bar.n = fields["done"]
            self.bar.set_postfix(failed=fields["failed"], refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_STAGES = {"load_encoder": "load encoder", "scan": "scan", "plan": "plan", "embed": "embed"}
_STAGES["interrupted"] = "cut short"  # the stage a Ctrl-C or SIGTERM stopped
_EMBED_PARTS = {
    "decode_wait": "waiting for decode",
    "encoding": "encoding",
    "encode_wait": "waiting for the encoder",
    "catalog_writes": "catalog writes",
}


def _stages_line(stages: dict[str, float]) -> str:
    """'stages: scan 0.1 s · plan 0.0 s · embed 9.1 s (waiting for decode 7.9 s, ...) · ...'"""
    inner = [f"{n} {stages[k]:.1f} s" for k, n in _EMBED_PARTS.items() if k in stages]
    parts = []
    for key, name in {**_STAGES, "index": "index"}.items():
        if key in stages:
            parts.append(f"{name} {stages[key]:.1f} s")
            if key == "embed" and inner:
                parts[-1] += f" ({', '.join(inner)})"
    return "stages: " + " · ".join(parts)


def counts_line(d: dict[str, Any]) -> str:
    """'new 3 · changed 0 · moved 1 · deleted 0 · unchanged 20 · failed 0 · embedded 3'"""
    return (
        f"new {d['new']} · changed {d['changed']} · moved {d['moved']} · deleted {d['deleted']}"
        f" · unchanged {d['unchanged']} · failed {d['failed']} · embedded {d['embedded']}"
    )


def _print_line(d: dict[str, Any]) -> None:
    """`--quiet`: the summary in one line."""
    typer.echo(f"{counts_line(d)} · {plural(d['images'], 'image')} · {d['seconds']:.1f} s")


def _print_build(d: dict[str, Any]) -> None:
    from indexer import kinds

    typer.echo(counts_line(d))
    recall = "n/a" if d["recall_at_10"] is None else f"{d['recall_at_10']:.3f}"
    typer.echo(
        f"index: {d['index_type']} · nprobe {d['nprobe'] or '-'} · recall@10 {recall} · "
        f"{d['images']} images, {d['vectors']} vectors"
    )
    typer.echo(f"time {d['seconds']:.1f} s · {d['images_per_second']:.1f} images/s")
    typer.echo(_stages_line(d.get("stages") or {}))
    if d.get("skipped_kinds"):
        typer.echo(f"skipped: {kinds.describe(d['skipped_kinds'])}")
    if d["failed"]:
        typer.echo(f"{plural(d['failed'], 'file')} could not be indexed: see `index failures`")
    if d.get("decoder_warnings"):
        n = plural(d["decoder_warnings"], "picture")
        typer.echo(f"{n} indexed with decoder warnings (the warning: lines above)")
    if d.get("ledger"):
        typer.echo(f"ledger: {plural(d['ledger'], 'file')} (index failures)")
    typer.echo(f"index home: {printable(d['index'])}")
