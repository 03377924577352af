"""`index dedup`: parse options, call `indexer.dedup.dedup`, write the reports or a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from indexer.cli.common import IndexOpt
from indexer.settings import Settings
from indexer.text import printable

if TYPE_CHECKING:
    from indexer.dedup import Report


OutputOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--output", "-o", help="Write report.html, report.json or report.csv (repeatable)."
    ),
]
HammingOpt = Annotated[
    int, typer.Option(help="near-identical: most pHash bits (of 64) that may differ.")
]
NearOpt = Annotated[float, typer.Option(help="near-duplicate: least CLIP cosine.")]
SimilarOpt = Annotated[
    float | None, typer.Option(help="Turn on the 'similar' tier at this CLIP cosine.")
]
KeepOpt = Annotated[
    str | None,
    typer.Option(
        help="Ordered keep rule [default: the original: "
        "camera,pixels,taken,encoding,unedited,copy-names,file-time,quality,size]."
    ),
]
PreferOpt = Annotated[
    list[Path] | None,
    typer.Option(help="Folder whose copies are kept first and never moved (repeatable)."),
]
ScriptOpt = Annotated[
    Path | None,
    typer.Option(
        help="Write a Python script that moves the non-kept files away (exact and "
        "near-identical; near-duplicate only with the script's --tiers)."
    ),
]
PairsDeviceOpt = Annotated[
    str | None,
    typer.Option(help="CLIP pairs on: auto (exact on a CUDA GPU when there is one) | cpu | cuda:N"),
]


def dedup_command(
    index: IndexOpt = None,
    output: OutputOpt = None,
    hamming: HammingOpt = 10,
    near_duplicate: NearOpt = 0.95,
    similar: SimilarOpt = None,
    keep: KeepOpt = None,
    prefer: PreferOpt = None,
    quarantine_script: ScriptOpt = None,
    device: PairsDeviceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Duplicate groups: exact, near-identical (pHash), near-duplicate and similar (CLIP)."""
    from indexer.cli.common import fail, run
    from indexer.dedup import DEFAULT_KEEP, FORMATS, DedupOptions
    from indexer.dedup import dedup as run_dedup
    from indexer.imaging import DecodeOptions

    settings = Settings.from_env(index=index, device=device)
    options = DedupOptions(
        device=settings.device.split(",")[0].strip() or "auto",
        hamming=hamming,
        near_duplicate=near_duplicate,
        similar=similar,
        keep=keep or DEFAULT_KEEP,
        prefer=tuple(str(p.expanduser().absolute()) for p in prefer or ()),
    )
    for path in output or ():
        if path.suffix.lower().lstrip(".") not in FORMATS:
            fail(f"{path}: name the report .html, .json or .csv")

    def produce() -> Report:
        report = run_dedup(settings.index, options, DecodeOptions.from_settings(settings))
        _write(report, output or [], quarantine_script)
        return report

    try:  # errors meant for you, a full disk or a read-only place: one line (cli_common.run)
        report = run(produce, settings.index)
    except OSError as exc:  # a report path that cannot be written (no such folder, a folder)
        fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    if as_json:
        typer.echo(report.render("json"))
    elif not output:
        typer.echo(summary(report))


def _write(report: Report, output: list[Path], quarantine_script: Path | None) -> None:
    """The reports asked for, and the quarantine script (executable), each written atomically."""
    from indexer.atomic import write_atomic

    for path in output:
        report.write(path)
        typer.echo(f"wrote {printable(path)}", err=True)
    if quarantine_script:
        write_atomic(quarantine_script, report.quarantine_script(quarantine_script.name))
        mode = quarantine_script.stat().st_mode  # made under the user's umask
        quarantine_script.chmod(mode | (mode & 0o444) >> 2)  # executable by who may read it
        typer.echo(
            f"wrote {printable(quarantine_script)}: `python3 {printable(quarantine_script)}`"
            " shows what it would move; add --apply to move",
            err=True,
        )


def summary(report: Report) -> str:
    """A readable text listing of the groups, tier by tier, for the terminal."""
    from indexer.dedup.report import describe_threshold
    from indexer.dedup.review import edits_in

    lines: list[str] = []
    tier = None
    by_id = {g.id: g for g in report.groups}
    for g in report.groups:
        edited = edits_in(g, by_id)
        if g.tier != tier:
            tier = g.tier
            lines.append(f"== {tier}: {describe_threshold(tier, g.threshold)} ==")
        contains = f", contains #{', #'.join(map(str, g.contains))}" if g.contains else ""
        resolved = f", resolved ({g.decision})" if g.resolved else ""
        shot = {
            "pair": ", one RAW+JPEG shot (a pair, nothing to clean up)",
            "edits": ", edits of one picture (kept apart: not moved by default)",
        }.get(g.relation, "")
        lines.append(
            f"#{g.id}: {len(g.members)} files, similarity {g.min_score:.4f}-{g.max_score:.4f}"
            f"{contains}{resolved}{shot}"
        )
        lines.append(f"  keep    {g.keep}  [{g.reason}]")
        for m in g.members:
            if m["path"] != g.keep:
                pair = "  (RAW+JPEG pair: left in place)" if m.get("pair") else ""
                mark = "edit" if m["path"] in edited else "copy"
                lines.append(f"  {m['score']:.4f}  {mark}  {m['path']}{pair}")
    counts = report.as_dict()["counts"]
    shown = [f"{n} {t}" for t, n in counts.items() if t != "similar" or report.thresholds.get(t)]
    edits = sum(g.relation == "edits" for g in report.groups)
    kinds = f" ({len(report.groups) - edits} of copies, {edits} of edits)" if edits else ""
    lines.append(f"{len(report.groups)} groups{kinds}: {', '.join(shown)} ({report.seconds:.2f} s)")
    return "\n".join(printable(line) for line in lines)  # file names may hold ESC, newlines
