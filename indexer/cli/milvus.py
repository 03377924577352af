"""`index export --format milvus` (a progress bar, then one line or JSON) and the options that
point search and serve at a Milvus collection. The token is read from MILVUS_TOKEN only."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.cli.common import fail, run
from indexer.interrupts import raising_on, signum_of
from indexer.settings import Settings

MilvusOpt = Annotated[
    str | None,
    typer.Option(
        "--milvus",
        help="Answer from this Milvus collection instead of the local FAISS file: a Milvus Lite "
        "file (./photos.milvus.db) or http://host:19530 (token in MILVUS_TOKEN) "
        "[env PHOTO_INDEX_MILVUS]",
        show_default=False,
    ),
]
MilvusUriOpt = Annotated[
    str | None,
    typer.Option(
        "--uri",
        help="--format milvus: a Milvus Lite file (./photos.milvus.db) or http://host:19530 "
        "(token in MILVUS_TOKEN, never on the command line)",
        show_default=False,
    ),
]
CollectionOpt = Annotated[
    str | None,
    typer.Option(
        "--collection",
        help="Milvus collection [env PHOTO_INDEX_MILVUS_COLLECTION; default photos]",
        show_default=False,
    ),
]


class _Bar:
    """tqdm on stderr over the entities a sync sends (none when nothing travels)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="vec", desc="milvus sync", file=sys.stderr)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def export_milvus_command(
    index: Path | None, uri: str | None, collection: str | None, as_json: bool
) -> None:
    """Sync the index's catalog to a Milvus collection and say what travelled."""
    from indexer.milvus.sync import export_milvus

    if not uri:
        fail("--format milvus needs --uri (./photos.milvus.db or http://host:19530)")
    settings = Settings.from_env(index=index, milvus_collection=collection)
    bar = _Bar(enabled=not as_json)
    try:
        with raising_on([signal.SIGTERM]):
            done = run(
                lambda: export_milvus(
                    settings.index, uri, settings.milvus_collection, progress=bar
                ),
                settings.index,
            )
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: what was sent stays sent
        bar.close()
        typer.echo("interrupted: run the same `index export` again to send the rest", err=True)
        raise typer.Exit(128 + signum_of(exc)) from None
    finally:
        bar.close()
    if as_json:
        typer.echo(json.dumps(done))
        return
    typer.echo(
        f"milvus {done['uri']} ({done['server']}, {done['index']}) collection "
        f"{done['collection']}: {done['entities']} entities · "
        f"upserted {done['upserted']} · deleted {done['deleted']} · unchanged "
        f"{done['unchanged']} · generation {done['generation']} · {done['seconds']:.1f} s"
    )
