"""The `index` command: each subcommand parses options, makes one library call, renders.

Errors the user can act on print one line (`error: <file>: <reason>`) and exit 1; a build that
finished but could not index some files it tried this run (`index failures` lists them;
files already in the ledger and unchanged since do not count again), or kept files it
could not see (a root not there: one `warning:` line each), exits 3.
One stopped by Ctrl-C or SIGTERM saves what it did and exits 130 or 143.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.settings import Settings, default_index_home
from indexer.text import printable

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: Rich markup would eat "[default: ...]" and "[env ...]"
    context_settings={"max_content_width": 120},  # help as wide as the terminal, up to 120
    help="Index photo collections with CLIP ViT-L/14, search by image, find duplicates.",
)

IndexOpt = Annotated[
    Path | None,
    typer.Option(
        "--index", help=f"Index folder [env PHOTO_INDEX_INDEX; default {default_index_home()}]"
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="Checkpoint: Birder .pt, open_clip/OpenAI state dict, OpenAI ViT-L-14.pt or a "
        "Hugging Face CLIP folder [env PHOTO_INDEX_WEIGHTS; default: download ViT-L/14]",
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="auto | cpu | cuda | cuda:N | cuda:0,cuda:1 (build: auto/cuda = every GPU) "
        "[default auto]",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
EXIT_SOME_FAILED = 3


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that carry a message meant for the user (no traceback)."""
    from indexer.build import BuildError
    from indexer.catalog import CatalogError
    from indexer.locking import IndexBusyError
    from indexer.search import SearchError
    from indexer.settings import SettingsError

    errors: list[type[BaseException]] = [
        BuildError,
        CatalogError,
        IndexBusyError,
        SearchError,
        SettingsError,
    ]
    try:
        from indexer.encoder import CheckpointError, DeviceError, WeightsError

        errors += [CheckpointError, DeviceError, WeightsError]
    except ImportError:  # pragma: no cover
        pass
    from indexer.ray_engine import RayUnavailableError
    from indexer.vectors import IndexFileError

    errors += [IndexFileError, RayUnavailableError]
    return tuple(errors)


def _run(fn: Any, index: Path | None = None) -> Any:
    """Call `fn`; errors meant for the user, a full disk or a read-only place print one line."""
    try:
        return fn()
    except _user_errors() as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail_if_disk(exc, index)
        raise


def _fail_if_disk(exc: BaseException, index: Path | None) -> None:
    """Exit 1 with what to free or fix when `exc` is a full disk, read-only or denied place."""
    from indexer.errors import describe_os_error

    message = describe_os_error(exc, index)
    if message is not None:
        _fail(message)


@app.command()
def build(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index.")],
    index: IndexOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per encoder batch.")] = None,
    workers: Annotated[int | None, typer.Option(help="Decode processes [default: cores].")] = None,
    compile: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help="torch.compile the encoder (GPU boxes)."),
    ] = None,
    max_megapixels: Annotated[float | None, typer.Option(help="Refuse larger images.")] = None,
    max_decode_mb: Annotated[
        float | None,
        typer.Option(help="Refuse images whose decode needs more memory (MiB) [default 768]."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Folder name to skip (repeatable; replaces defaults).")
    ] = None,
    memory_budget_mb: Annotated[
        float | None, typer.Option(help="Compress vectors (SQ8/PQ) to fit this many MB.")
    ] = None,
    reindex: Annotated[bool, typer.Option(help="Re-embed everything with new weights.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="Try files in the ledger again.")] = False,
    prune: Annotated[
        bool,
        typer.Option(
            help="Also remove indexed files under roots or folders that are missing, empty or "
            "unreadable, and a large share of a root gone at once (kept otherwise)."
        ),
    ] = False,
    engine: Annotated[str | None, typer.Option(help="local | ray (decode+encode on Ray)")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address [default: start one here]")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index photos: new and changed files are embedded, moved ones relinked, deleted removed."""
    from indexer.build import build as run_build
    from indexer.interrupts import raising_on

    settings = Settings.from_env(
        index=index,
        weights=weights,
        device=device,
        batch_size=batch_size,
        workers=workers,
        compile=compile,
        max_megapixels=max_megapixels,
        max_decode_mb=max_decode_mb,
        excludes=tuple(exclude) if exclude else None,
        memory_budget_mb=memory_budget_mb,
        engine=engine,
        ray_address=ray_address,
    )
    bar = _Progress(enabled=not quiet)
    stopped: KeyboardInterrupt | None = None
    try:
        with raising_on([signal.SIGTERM]):  # SIGTERM takes Ctrl-C's path: save, then stop
            summary = _run(
                lambda: run_build(
                    paths,
                    settings,
                    reindex=reindex,
                    retry_failed=retry_failed,
                    progress=bar,
                    prune=prune,
                ),
                settings.index,
            )
    except KeyboardInterrupt as exc:  # the build saved what it had done (exc.result)
        summary, stopped = getattr(exc, "result", None), exc
    finally:
        bar.close()
    _render_build(summary, stopped, as_json=as_json, quiet=quiet)


def _render_build(
    summary: Any, stopped: KeyboardInterrupt | None, *, as_json: bool, quiet: bool
) -> None:
    """Print a build's summary; exit 130/143 after Ctrl-C/SIGTERM, 3 if files failed."""
    from indexer.interrupts import signum_of

    for line in summary.warnings if summary is not None else ():
        typer.echo(f"warning: {printable(line)}", err=True)
    if summary is not None and as_json:
        typer.echo(json.dumps(summary.as_dict()))
    elif summary is not None and not quiet:
        _print_build(summary.as_dict())
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


class _Progress:
    """tqdm on stderr: images/s, ETA, skipped and failed counts."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        if event == "scan":
            typer.echo(f"found {fields['found']} images", err=True)
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


def _print_build(d: dict[str, Any]) -> None:
    from indexer import kinds

    typer.echo(
        f"new {d['new']} · changed {d['changed']} · moved {d['moved']} · deleted {d['deleted']}"
        f" · unchanged {d['unchanged']} · failed {d['failed']} · embedded {d['embedded']}"
    )
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
        typer.echo(f"{d['failed']} files could not be indexed: see `index failures`")
    if d.get("ledger"):
        n = d["ledger"]
        typer.echo(f"ledger: {n} file{'' if n == 1 else 's'} (index failures)")
    typer.echo(f"index home: {printable(d['index'])}")


@app.command()
def search(
    image: Annotated[Path, typer.Argument(help="Query image (indexed or not).")],
    k: Annotated[int, typer.Option("-k", "--k", help="Number of results.")] = 10,
    index: IndexOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Nearest neighbours of an image: rank, score, path."""
    from indexer.search import search as run_search

    settings = Settings.from_env(index=index, weights=weights, device=device)
    hits = _run(lambda: run_search(image, settings, k=k), settings.index)
    if as_json:
        typer.echo(json.dumps([{"path": h.path, "score": h.score, "id": h.id} for h in hits]))
        return
    for h in hits:
        typer.echo(f"{h.rank:>3}  {h.score:.4f}  {printable(h.path)}")


@app.command()
def stats(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Images, vectors, failures, index type, nprobe, recall, encoder, sizes on disk."""
    from indexer.verify import stats as run_stats

    settings = Settings.from_env(index=index)
    data = _run(lambda: run_stats(settings), settings.index)
    if as_json:
        typer.echo(json.dumps(data))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        typer.echo(printable(f"{key:>14}: {value}"))


@app.command()
def failures(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """The failure ledger: files that could not be indexed, and why."""
    from indexer.verify import failures as run_failures

    settings = Settings.from_env(index=index)
    rows = _run(lambda: run_failures(settings), settings.index)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no failures")
    for r in rows:
        line = f"{r['path']}: [{r['stage']}] {r['reason']} (attempts {r['attempts']})"
        typer.echo(printable(line))


@app.command()
def verify(
    index: IndexOpt = None,
    repair: Annotated[bool, typer.Option(help="Fix what verify finds.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check catalog ⇄ FAISS ⇄ files; `--repair` fixes without re-embedding."""
    from indexer.verify import verify as run_verify

    settings = Settings.from_env(index=index)
    report = _run(lambda: run_verify(settings, repair=repair), settings.index)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        for line in report["messages"]:
            typer.echo(printable(line))
    if report["problems"] and not repair:
        raise typer.Exit(1)


@app.command()
def gc(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Drop now the kept vectors of pictures no path uses any more (tombstones)."""
    from indexer.files import human_size
    from indexer.tombstones import gc as run_gc

    settings = Settings.from_env(index=index)
    done = _run(lambda: run_gc(settings))
    if as_json:
        typer.echo(json.dumps(done))
    else:
        typer.echo(f"dropped {done['dropped']} tombstones ({human_size(done['bytes'])} of vectors)")


@app.command()
def embed(
    images: Annotated[list[Path], typer.Argument(help="Images or folders of images.")],
    weights: WeightsOpt = None,
    device: DeviceOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write .npz")] = None,
    features: Annotated[bool, typer.Option(help="Also keep the 16x16 feature maps.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 16,
    dtype: Annotated[
        str, typer.Option(help="fp32 (exact reference numbers) | bf16 (faster) | auto")
    ] = "fp32",
) -> None:
    """Embed images: .npz with paths, projection, embedding (and features), or one line each."""
    from indexer.embed import embed_paths

    settings = Settings.from_env(weights=weights, device=device, dtype=dtype)

    def on_error(path: str, reason: str) -> None:
        typer.echo(f"error: {printable(path)}: {printable(reason)}", err=True)

    result = _run(
        lambda: embed_paths(
            images, settings, features=features, batch_size=batch_size, on_error=on_error
        )
    )
    if output is not None:
        _run(lambda: result.save(output))
        typer.echo(f"wrote {len(result.paths)} embeddings to {printable(output)}")
    else:
        for path, vec in zip(result.paths, result.projection, strict=True):
            head = " ".join(f"{v:+.4f}" for v in vec[:6])
            typer.echo(f"{printable(path)}\t{vec.shape[0]}-d\t[{head} ...]")
    if result.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command("export")
def export_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (.parquet)")],
    index: IndexOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet")] = "parquet",
) -> None:
    """Export id, path, content hash, vector and metadata for a distributed vector store."""
    from indexer.export import ExportError, export_parquet

    if fmt != "parquet":
        _fail(f"unknown export format {fmt!r}: use parquet")
    settings = Settings.from_env(index=index)
    try:
        rows = _run(lambda: export_parquet(settings.index, output), settings.index)
    except ExportError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {rows} rows to {printable(output)}")


def _register() -> None:
    """Commands that live in their own modules (each a thin face over one library call)."""
    from indexer.cli_dedup import dedup_command
    from indexer.cli_serve import serve_command

    app.command("dedup")(dedup_command)
    app.command("serve")(serve_command)


_register()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
