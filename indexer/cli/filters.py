"""The result filters of `index search` (the UI's sidebar, as options): folder, EXIF date range,
file size; the same on the local index and pushed down to Milvus with `--milvus`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

FolderOpt = Annotated[
    Path | None,
    typer.Option("--folder", help="Only pictures under this folder.", show_default=False),
]
TakenFromOpt = Annotated[
    str | None,
    typer.Option(
        "--taken-from",
        help="Only pictures taken (EXIF) on or after this date: YYYY, YYYY-MM or YYYY-MM-DD.",
        show_default=False,
    ),
]
TakenToOpt = Annotated[
    str | None,
    typer.Option(
        "--taken-to", help="Only pictures taken (EXIF) on or before this date.", show_default=False
    ),
]
MinSizeOpt = Annotated[
    int | None,
    typer.Option("--min-size", help="Only files of at least this many bytes.", min=0),
]
MaxSizeOpt = Annotated[
    int | None,
    typer.Option("--max-size", help="Only files of at most this many bytes.", min=0),
]
