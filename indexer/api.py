"""One Python API with the shape of the command: `Index(path)` and its verbs, the index first.

    from indexer import Index
    photos = Index("~/photo-index", weights="vit_l14.pt")
    photos.build(["~/Pictures"])
    for hit in photos.search("~/query.jpg", k=5):
        print(hit.rank, hit.score, hit.path)

Each verb is the function the CLI calls (indexer.build.build, indexer.search.search,
indexer.dedup.dedup, indexer.verify...), which all stay importable and unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.settings import Settings

if TYPE_CHECKING:
    from indexer.build.summary import BuildSummary
    from indexer.dedup import DedupOptions, Report
    from indexer.query import ImageLike, Term
    from indexer.search import Filters, Hit


class Index:
    """An index folder and how to run on it: `Index(path, **settings)`, where settings are the
    options the command takes (weights, device, batch_size, workers, text_weights, ...; see
    `indexer.settings.Settings`), PHOTO_INDEX_* variables filling what is not given. Nothing is
    read or written until a verb runs."""

    def __init__(self, path: str | os.PathLike[str] | None = None, **settings: Any) -> None:
        index = Path(path).expanduser() if path is not None else None
        self.settings = Settings.from_env(index=index, **settings)

    @property
    def path(self) -> Path:
        """The index folder (absolute)."""
        return self.settings.index.absolute()

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r})"

    def build(
        self,
        roots: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        reindex: bool = False,
        retry_failed: bool = False,
        prune: bool = False,
        progress: Any = None,
    ) -> BuildSummary:
        """`index build ROOTS...`: embed new and changed photos, relink moved ones, drop deleted
        ones; the summary (`.as_dict()` is `index build --json`)."""
        from indexer.build import build

        if isinstance(roots, str | os.PathLike):
            roots = [roots]
        flags = {"reindex": reindex, "retry_failed": retry_failed, "prune": prune}
        return build(list(roots), self.settings, progress=progress, **flags)

    def search(
        self,
        query: ImageLike | str | None = None,
        *,
        k: int = 10,
        text: str | None = None,
        terms: Sequence[Term] = (),
        minus: Sequence[Term] = (),
        filters: Filters | None = None,
    ) -> list[Hit]:
        """`index search`: the `k` nearest pictures, best first. `query` is a picture (a path,
        bytes or a PIL image); `text` words; `terms` and `minus` a combined query
        (`indexer.query.Term`)."""
        from indexer.search import search

        return search(query, self.settings, k, filters, text=text, terms=terms, minus=minus)

    def dedup(self, options: DedupOptions | None = None) -> Report:
        """`index dedup`: the duplicate groups (`.render("json")`, `.write(path)` for reports)."""
        from indexer.dedup import dedup
        from indexer.imaging import DecodeOptions

        return dedup(self.settings.index, options, DecodeOptions.from_settings(self.settings))

    def stats(self) -> dict[str, Any]:
        """`index stats --json`: counts, index type, recall, encoder, bytes on disk."""
        from indexer.verify import stats

        return stats(self.settings)

    def failures(self) -> list[dict[str, Any]]:
        """`index failures --json`: files that could not be indexed, and why."""
        from indexer.verify import failures

        return failures(self.settings)

    def verify(self, *, repair: bool = False) -> dict[str, Any]:
        """`index verify [--repair]`: catalog, FAISS file and photos checked against each other."""
        from indexer.verify import verify

        return verify(self.settings, repair=repair)
