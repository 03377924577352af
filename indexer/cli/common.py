"""What every `index` subcommand shares: option types, exit codes, and one error path (a
message meant for the user, a full disk or a read-only place → one line, exit 1)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.errors import UserError, describe_os_error
from indexer.settings import default_index_home
from indexer.text import printable

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


def fail(message: str, code: int = 1) -> None:
    """Print `error: <message>` (control characters escaped) on stderr and exit `code`."""
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(code)


def run(fn: Any, index: Path | None = None) -> Any:
    """Call `fn`; errors meant for the user, a full disk or a read-only place print one line."""
    try:
        return fn()
    except UserError as exc:
        fail(str(exc))
    except Exception as exc:
        fail_if_disk(exc, index)
        raise


def fail_if_disk(exc: BaseException, index: Path | None) -> None:
    """Exit 1 with what to free or fix when `exc` is a full disk, read-only or denied place."""
    message = describe_os_error(exc, index)
    if message is not None:
        fail(message)


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(f"note: {printable(record.getMessage())}", err=True)


def show_notes() -> None:
    """The library's warnings (a derived file it rebuilds, a fallback it takes) print as one
    `note: ...` line each on stderr."""
    logger = logging.getLogger("indexer")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler(logging.WARNING))
