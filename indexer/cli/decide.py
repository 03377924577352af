"""`index decide`: decisions that `index dedup` honours (keep this one; not duplicates).

Each subcommand parses its paths, makes one call to `indexer.dedup.decisions`, prints the
result. A path that is not indexed or too few paths: one `error:` line, exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.cli.common import HELP_SETTINGS, IndexOpt, JsonOpt, WordyGroup, run
from indexer.settings import Settings
from indexer.text import printable

decide_app = typer.Typer(
    cls=WordyGroup,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_SETTINGS,
    help="Decisions that dedup, its reports and the quarantine script honour: keep this "
    "picture; these pictures are not duplicates. Kept by content hash: moves and renames "
    "keep them.",
)
NoteOpt = Annotated[str | None, typer.Option("--note", help="Why (shown by `decide list`).")]


def _call(index: Path | None, fn: Callable[[Settings], Any]) -> Any:
    """One library call; its errors meant for the user print one line and exit 1."""
    settings = Settings.from_env(index=index)
    return run(lambda: fn(settings), settings.index)


@decide_app.command("keep")
def keep_command(
    path: Annotated[Path, typer.Argument(help="An indexed picture.")],
    index: IndexOpt = None,
    note: NoteOpt = None,
) -> None:
    """This picture is the kept file of whatever duplicate group it is in."""
    from indexer.dedup import decisions

    made = _call(index, lambda s: decisions.keep(s, path, note))
    typer.echo(f"#{made.id} keep {printable(made.paths[0])}: the kept file of its groups")


@decide_app.command("distinct")
def distinct_command(
    paths: Annotated[list[Path], typer.Argument(help="Two or more indexed pictures.")],
    index: IndexOpt = None,
    note: NoteOpt = None,
) -> None:
    """These pictures are never grouped with each other (only copies of one: keep them all)."""
    from indexer.dedup import decisions

    made = _call(index, lambda s: decisions.distinct(s, paths, note))
    what = "not duplicates of each other" if len(made.hashes) > 1 else "copies you keep"
    typer.echo(f"#{made.id} distinct: {len(made.paths)} files, {what}")
    for p in made.paths:
        typer.echo(f"  {printable(p)}")


@decide_app.command("list")
def list_command(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Every decision, oldest first, with where its pictures are now."""
    from indexer.dedup import decisions

    rows = _call(index, decisions.list_)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no decisions")
    for row in rows:
        note = f"  ({row['note']})" if row["note"] else ""
        typer.echo(printable(f"#{row['id']} {row['kind']} {row['created_at'][:10]}{note}"))
        for pic in row["pictures"]:
            where = ", ".join(pic["paths"]) or f"not in the index now (picture {pic['hash']})"
            typer.echo(printable(f"  {where}"))


@decide_app.command("forget")
def forget_command(
    paths: Annotated[list[Path], typer.Argument(help="Pictures whose decisions to drop.")],
    index: IndexOpt = None,
) -> None:
    """Drop every decision that names one of these pictures."""
    from indexer.dedup import decisions

    gone = _call(index, lambda s: decisions.forget(s, paths))
    for d in gone:
        typer.echo(printable(f"forgot #{d.id} {d.kind}: {', '.join(d.paths)}"))
    typer.echo(f"{len(gone)} decisions forgotten" if gone else "no decision names these pictures")
