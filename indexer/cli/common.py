"""What every `index` subcommand shares: option types, exit codes, and one error path (a
message meant for the user, a full disk or a read-only place → one line, exit 1)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

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
        "[env PHOTO_INDEX_DEVICE; default auto]",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
EXIT_SOME_FAILED = 3
# -h as well as --help; help as wide as the terminal, up to 120 columns
HELP_SETTINGS = {"max_content_width": 120, "help_option_names": ["-h", "--help"]}

# What help calls each value (`--index DIR`, `build PATH...`): words, not Python types; a value
# not named here is named by its type (N, NUMBER, PATH, TEXT).
_WORDS = {
    "index": "DIR", "weights": "PATH", "text_weights": "PATH", "device": "DEVICE",
    "batch_size": "N", "workers": "N", "max_megapixels": "MP", "max_decode_mb": "MB",
    "memory_budget_mb": "MB", "max_upload_mb": "MB", "exclude": "NAME", "engine": "local|ray",
    "ray_address": "HOST:PORT", "k": "N", "folder": "DIR", "taken_from": "DATE",
    "taken_to": "DATE", "min_size": "BYTES", "max_size": "BYTES", "milvus": "URI", "uri": "URI",
    "collection": "NAME", "output": "FILE", "fmt": "parquet|milvus", "port": "PORT",
    "host": "ADDRESS", "hamming": "BITS", "near_duplicate": "COSINE", "similar": "COSINE",
    "keep": "RULE", "prefer": "DIR", "quarantine_script": "FILE", "note": "TEXT",
    "dtype": "fp32|bf16|auto", "paths": "PATH", "path": "PATH", "images": "IMAGE",
    "query": "QUERY", "max_file_mb": "MB", "settle": "SECONDS", "max_wait": "SECONDS",
    "poll_interval": "SECONDS", "observer": "auto|events|polling",
}  # fmt: skip
_BY_TYPE = {"integer": "N", "float": "NUMBER", "path": "PATH", "text": "TEXT"}


class WordyGroup(TyperGroup):
    """A command group whose commands' help names values in words (`_WORDS`): the `cls` of
    every Typer app of the `index` command."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in getattr(command, "params", ()):
            _in_words(param)
        return command


class TopGroup(WordyGroup):
    """The `index` group: `--version` is answered before Typer reads any option (reading one
    loads pydantic: 0.1 s), and listed first in the help."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args[:1] == ["--version"]:
            from indexer.cli import version_line

            typer.echo(version_line())
            ctx.exit()
        return super().parse_args(ctx, args)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        rows = [("--version", "Print the version and exit.")]
        rows += [row for p in self.get_params(ctx) if (row := p.get_help_record(ctx))]
        with formatter.section("Options"):
            formatter.write_dl(rows)
        self.format_commands(ctx, formatter)


def _in_words(param: Any) -> None:
    if getattr(param, "is_flag", False) or getattr(param, "_in_words", False) or not param.name:
        return
    param._in_words = True
    kind = getattr(getattr(param, "type", None), "name", "")
    word = param.metavar or _WORDS.get(param.name) or _BY_TYPE.get(kind, "VALUE")
    if param.param_type_name != "argument":
        param.metavar = word
        return
    shown = word + ("..." if param.nargs != 1 else "")
    usage = shown if param.required else f"[{shown}]"
    param.metavar = shown
    param.display_type_rich = lambda ctx: None  # the words alone, not "PATH... <list[Path]>"
    param._usage_display_name = lambda: usage


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
