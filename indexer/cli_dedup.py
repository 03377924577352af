"""`index dedup`: parse options, call `indexer.dedup.dedup`, write the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from indexer.settings import Settings


def dedup_command(
    index: Annotated[Path | None, typer.Option("--index", help="Index folder.")] = None,
    output: Annotated[
        list[Path] | None,
        typer.Option("--output", "-o", help="report.html, report.json or report.csv (repeatable)"),
    ] = None,
    hamming: Annotated[int, typer.Option(help="near-identical: max pHash bits apart")] = 10,
    near_duplicate: Annotated[float, typer.Option(help="near-duplicate: min CLIP cosine")] = 0.95,
    similar: Annotated[
        float | None, typer.Option(help="turn on the 'similar' tier at this cosine")
    ] = None,
    keep: Annotated[str, typer.Option(help="ordered keep rule")] = "",
    prefer: Annotated[
        list[Path] | None, typer.Option(help="folder whose copies are kept first (repeatable)")
    ] = None,
    quarantine_script: Annotated[
        Path | None, typer.Option(help="write a script that moves non-kept files away")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Duplicate groups: exact, near-identical (pHash), near-duplicate and similar (CLIP)."""
    from indexer.cli import _run
    from indexer.dedup import DEFAULT_KEEP, DedupOptions, KeepRuleError
    from indexer.dedup import dedup as run_dedup

    settings = Settings.from_env(index=index)
    options = DedupOptions(
        hamming=hamming,
        near_duplicate=near_duplicate,
        similar=similar,
        keep=keep or DEFAULT_KEEP,
        prefer=tuple(str(p) for p in prefer or ()),
    )
    try:
        report = _run(lambda: run_dedup(settings.index, options))
        for path in output or ():
            report.write(path)
            typer.echo(f"wrote {path}", err=True)
    except (KeepRuleError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if quarantine_script:
        text = report.quarantine_script(quarantine_script.name)
        quarantine_script.write_text(text)
        quarantine_script.chmod(0o755)
        typer.echo(f"wrote {quarantine_script} (dry run by default; --apply moves)", err=True)
    if as_json:
        typer.echo(report.render("json"))
    elif not output:
        for g in report.groups:
            typer.echo(
                f"[{g.tier}] group {g.id}: {len(g.members)} files, similarity "
                f"{g.min_score:.3f}-{g.max_score:.3f}; keep {g.keep} ({g.reason})"
            )
            for m in g.members:
                if m["path"] != g.keep:
                    typer.echo(f"    {m['score']:.4f}  {m['path']}")
        counts = report.as_dict()["counts"]
        typer.echo(", ".join(f"{n} {t}" for t, n in counts.items()) + " groups")
