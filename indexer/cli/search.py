"""`index search`: parse the query (images and words, + and --minus) and the filters, make one
library call, print one line per picture (or JSON, or bare paths)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from indexer.cli.common import DeviceOpt, IndexOpt, JsonOpt, WeightsOpt, fail, run
from indexer.cli.filters import FolderOpt, MaxSizeOpt, MinSizeOpt, TakenFromOpt, TakenToOpt
from indexer.cli.milvus import CollectionOpt, MilvusOpt
from indexer.settings import Settings
from indexer.text import plural, printable

if TYPE_CHECKING:
    from indexer.search import Filters, Hit

QueryArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Image files (indexed or not) and/or words to search for; a lone + separates "
        "two texts (red car + beach).",
        show_default=False,
    ),
]
MinusOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--minus",
        metavar="TEXT_OR_IMAGE",
        help="Words or an image file to subtract from the query (repeatable).",
        show_default=False,
    ),
]
KOpt = Annotated[int, typer.Option("-k", "--k", help="Number of results.")]
TextOpt = Annotated[
    bool, typer.Option("--text", help="Every term is text, even if a file has that name.")
]
ImageOpt = Annotated[bool, typer.Option("--image", help="Every term is an image file.")]
TextWeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--text-weights",
        help="Full-CLIP checkpoint for text queries (OpenAI ViT-L-14.pt, open_clip state "
        "dict, Hugging Face CLIPModel folder) [env PHOTO_INDEX_TEXT_WEIGHTS; default: the "
        "build's weights if they hold a text tower, else OpenAI's ViT-L/14, downloaded once]",
    ),
]
PathsOnlyOpt = Annotated[bool, typer.Option("--paths-only", help="Print one path per line.")]
AllCopiesOpt = Annotated[
    bool,
    typer.Option(
        "--all-copies",
        help="List every path of a picture stored several times (byte-identical copies); "
        "by default one line per picture names its first path and counts the others.",
    ),
]


def search_command(
    query: QueryArg = None,
    minus: MinusOpt = None,
    k: KOpt = 10,
    text: TextOpt = False,
    image: ImageOpt = False,
    text_weights: TextWeightsOpt = None,
    index: IndexOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    paths_only: PathsOnlyOpt = False,
    all_copies: AllCopiesOpt = False,
    folder: FolderOpt = None,
    taken_from: TakenFromOpt = None,
    taken_to: TakenToOpt = None,
    min_size: MinSizeOpt = None,
    max_size: MaxSizeOpt = None,
    milvus: MilvusOpt = None,
    collection: CollectionOpt = None,
) -> None:
    """Nearest neighbours of images and/or words, added (+) and subtracted (--minus): rank,
    score, path."""
    from indexer.query import check_date, parse_words
    from indexer.search import Filters
    from indexer.search import search as run_search

    if text and image:
        fail("--text and --image: give one of them")
    force = "text" if text else "image" if image else None
    plus, less = run(lambda: parse_words(query or [], minus or [], force))
    settings = Settings.from_env(
        index=index, weights=weights, device=device, text_weights=text_weights, milvus=milvus,
        milvus_collection=collection,
    )  # fmt: skip
    dates = run(
        lambda: (check_date(taken_from, "--taken-from"), check_date(taken_to, "--taken-to"))
    )
    where = run(lambda: Filters(folder and str(folder), *dates, min_size, max_size))

    def note(message: str) -> None:
        typer.echo(f"note: {printable(message)}", err=True)

    hits = run(
        lambda: run_search(None, settings, k, where, terms=plus, minus=less, on_note=note),
        settings.index,
    )
    _print_hits(hits, where, as_json=as_json, paths_only=paths_only, all_copies=all_copies)


def _print_hits(
    hits: list[Hit], where: Filters, *, as_json: bool, paths_only: bool, all_copies: bool
) -> None:
    """JSON (every path), or one line per picture; "no results" says whether filters did it."""
    from indexer.search import Filters

    if as_json:
        rows = [{"path": h.path, "score": h.score, "id": h.id, "copies": h.copies} for h in hits]
        typer.echo(json.dumps(rows))
        return
    if not hits:  # on stderr under --paths-only: a pipe gets no line that is not a path
        why = ": no indexed picture passes the filters" if where != Filters() else ""
        typer.echo(f"no results{why}", err=paths_only)
    for h in hits:
        _print_hit(h, paths_only, all_copies)


def _print_hit(h: Hit, paths_only: bool, all_copies: bool) -> None:
    """One line per picture (`(+N copies)` when the bytes are stored several times); with
    --all-copies each other path follows on its own line."""
    n = len(h.copies)
    more = f"  (+{plural(n, 'copy', 'copies')})" if n and not all_copies else ""
    line = f"{h.rank:>3}  {h.score:.4f}  {printable(h.path)}{more}"
    typer.echo(printable(h.path) if paths_only else line)
    for path in h.copies if all_copies else ():
        typer.echo(printable(path) if paths_only else f"{'':>3}  {'copy':>6}  {printable(path)}")
