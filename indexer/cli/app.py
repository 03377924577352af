"""The `index` command: each subcommand parses options, makes one library call, renders.

Errors the user can act on print one line (`error: <file>: <reason>`) and exit 1; a build that
finished but could not index some files it tried this run (`index failures` lists them;
files already in the ledger and unchanged since do not count again), or kept files it
could not see (a root not there: one `warning:` line each), exits 3.
One stopped by Ctrl-C or SIGTERM saves what it did and exits 130 or 143.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

from indexer.cli.build import build_command
from indexer.cli.common import (
    EXIT_SOME_FAILED,
    HELP_SETTINGS,
    DeviceOpt,
    IndexOpt,
    JsonOpt,
    TopGroup,
    WeightsOpt,
    fail,
    run,
    show_notes,
)
from indexer.cli.decide import decide_app
from indexer.cli.dedup import dedup_command
from indexer.cli.milvus import CollectionOpt, MilvusUriOpt, export_milvus_command
from indexer.cli.search import search_command
from indexer.cli.serve import serve_command
from indexer.cli.watch import watch_command
from indexer.settings import Settings
from indexer.text import printable

app = typer.Typer(
    cls=TopGroup,  # --version; help names values in words: --index DIR, build PATH...
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: Rich markup would eat "[default: ...]" and "[env ...]"
    context_settings=HELP_SETTINGS,
    help="Index photo collections with CLIP ViT-L/14, search by image, find duplicates.",
)


@app.callback()
def _every_command() -> None:
    # Pillow's warnings about a picture are the build's to report, once, one line per photo
    # (indexer.decoder_notes); a report or a search decoding that picture again stays quiet.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
    show_notes()  # the library's warnings (a derived file rebuilt...): one `note:` line each


# Commands that live in their own modules (each a thin face over one library call); the
# others are defined below. Listed in --help in this order.
app.command("build")(build_command)
app.command("watch")(watch_command)
app.command("search")(search_command)


@app.command()
def stats(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Images, vectors, failures, index type, nprobe, recall, encoder, sizes on disk."""
    from indexer.verify import stats as run_stats

    settings = Settings.from_env(index=index)
    data = run(lambda: run_stats(settings), settings.index)
    if as_json:
        typer.echo(json.dumps(data))
        return
    from indexer.cli.stats import stats_lines

    typer.echo("\n".join(stats_lines(data)))


@app.command()
def failures(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """The failure ledger: files that could not be indexed, and why."""
    from indexer.verify import failures as run_failures

    settings = Settings.from_env(index=index)
    rows = run(lambda: run_failures(settings), settings.index)
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
    report = run(lambda: run_verify(settings, repair=repair), settings.index)
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
    from indexer.store.tombstones import gc as run_gc

    settings = Settings.from_env(index=index)
    done = run(lambda: run_gc(settings))
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

    result = run(
        lambda: embed_paths(
            images, settings, features=features, batch_size=batch_size, on_error=on_error
        )
    )
    if output is not None:
        run(lambda: result.save(output))
        typer.echo(f"wrote {len(result.paths)} embeddings to {printable(output)}")
    else:
        for path, vec in zip(result.paths, result.projection, strict=True):
            head = " ".join(f"{v:+.4f}" for v in vec[:6])
            typer.echo(f"{printable(path)}\t{vec.shape[0]}-d\t[{head} ...]")
    if result.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command("export")
def export_cmd(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (.parquet)")
    ] = None,
    index: IndexOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet | milvus")] = "parquet",
    uri: MilvusUriOpt = None,
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export id, path, content hash, vector and metadata for a distributed vector store;
    `--format milvus` keeps a Milvus collection in sync (only what changed travels)."""
    from indexer.store.export import ExportError, export_parquet

    if fmt == "milvus":
        export_milvus_command(index, uri, collection, as_json)
        return
    if fmt != "parquet":
        fail(f"unknown export format {fmt!r}: use parquet or milvus")
    if output is None:
        fail("--format parquet needs --output FILE")
    settings = Settings.from_env(index=index)
    try:
        rows = run(lambda: export_parquet(settings.index, output), settings.index)
    except ExportError as exc:
        fail(str(exc))
    typer.echo(f"wrote {rows} rows to {printable(output)}")


app.command("dedup")(dedup_command)
app.add_typer(decide_app, name="decide")
app.command("serve")(serve_command)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
