"""Query by image or text, or by several of each added and subtracted (`indexer.query`):
encode each term exactly as the build did (images) or with the same CLIP's text tower (text),
search FAISS with their normalized weighted sum, join the catalog.

`Searcher` keeps the encoder and the index loaded (the UI holds one per process) and reloads
the index when a build has saved a new one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from indexer import imaging
from indexer.errors import EncoderError, SearchError
from indexer.pins import encoder_identity_changed
from indexer.query import ImageLike, Term, check_date, check_query_file, check_terms, combine
from indexer.query import is_image_query as is_image_query  # the CLI's test, kept here too
from indexer.settings import Settings
from indexer.store import sync
from indexer.store.catalog import Catalog
from indexer.store.home import require_content
from indexer.text_tower import check_text_source, load_text_tower


@dataclass
class Hit:
    """One result: a matching picture (one content), its cosine score, catalog metadata, its
    first path and the other paths of the same bytes (`copies`)."""

    rank: int
    score: float
    id: int
    path: str
    size: int | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken_at: str | None = None
    camera: str | None = None
    copies: list[str] = field(default_factory=list)  # other paths of the same bytes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Filters:
    """Optional result filters: folder prefix, EXIF date range (ISO strings), file size."""

    folder: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    min_size: int | None = None
    max_size: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("from", self.date_from), ("to", self.date_to)):
            check_date(value, f"date {name}")

    def accepts(self, rec: dict[str, Any]) -> bool:
        if self.folder:
            root = os.path.abspath(self.folder).rstrip(os.sep) + os.sep
            if not rec["path"].startswith(root):
                return False
        taken = rec.get("taken_at")
        if self.date_from and (not taken or taken < self.date_from):
            return False
        if self.date_to and (not taken or taken[: len(self.date_to)] > self.date_to):
            return False
        if self.min_size is not None and (rec.get("size") or 0) < self.min_size:
            return False
        if self.max_size is not None and (rec.get("size") or 0) > self.max_size:
            return False
        return True


class Searcher:
    """A loaded index + encoder; cheap to query many times."""

    def __init__(self, settings: Settings, encoder: Any = None) -> None:
        if settings.milvus:  # a URI that cannot work is named before any model loads
            from indexer.milvus.client import check_target

            check_target(settings.milvus, settings.milvus_collection)
        self.settings = settings
        self.catalog = Catalog(settings.index, readonly=True)
        self._encoder = encoder
        self._text_encoder: Any = None
        self.text_note: str | None = None  # why the text tower could not be checked, if so
        self._index: Any = None
        self._stamp: tuple[float, int] | None = None
        self._milvus: Any = None
        self.lagging = False

    def close(self) -> None:
        self.catalog.close()
        if self._milvus is not None:
            self._milvus.close()

    # -- loading ---------------------------------------------------------------------------
    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from indexer.encoder import load_encoder

            weights = self.settings.weights or self.catalog.get_meta("weights_path")
            self._encoder = load_encoder(
                weights,
                device=self.settings.device,
                dtype=self.settings.dtype,
                cache_dir=self.settings.cache_dir,
            )
        pinned = self.catalog.get_meta("encoder")
        if encoder_identity_changed(pinned, self._encoder.identity):
            raise SearchError(
                f"{self.settings.index} was built with other weights "
                f"({pinned.get('architecture')}); pass the same --weights as the build"
            )
        return self._encoder

    @property
    def text_encoder(self) -> Any:
        """The text tower, loaded once: from `text_weights`, else the build's weights file when
        it is a full CLIP, else the default download; refused when it is not the index's CLIP
        (`check_text_source`), which may also leave a note in `text_note`."""
        if self._text_encoder is None:
            pinned = self.catalog.get_meta("encoder") or {}
            dim = int(self.catalog.get_meta("dim", 0))
            encoder = load_text_tower(self.settings, self.catalog.get_meta("weights_path"), dim)
            self.text_note = check_text_source(encoder, pinned, dim, self.settings.index)
            self._text_encoder = encoder
        return self._text_encoder

    @property
    def index(self) -> Any:
        """The FAISS index, reloaded when the file on disk changed since the last query."""
        path = sync.index_path(self.settings.index)
        try:
            st = path.stat()
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._index is None or stamp != self._stamp:
            self._index, self.lagging = sync.open_index(self.catalog, self.settings.index)
            self._stamp = stamp
        return self._index

    # -- queries ---------------------------------------------------------------------------
    def embed_query(
        self, image: str | Path | bytes | Image.Image, name: str | None = None
    ) -> np.ndarray:
        """The query's normalized projection, preprocessed exactly as `index build` does;
        `name` names bytes (an upload): its suffix picks the RAW decoder, as a path's does."""
        if isinstance(image, Image.Image):
            img = image
        else:
            if isinstance(image, str | Path):
                check_query_file(image)
            try:
                options = imaging.DecodeOptions.from_settings(self.settings, draft=True)
                img, _ = imaging.open_image(image, options, name=name)
            except imaging.ImageError as exc:
                raise SearchError(f"{exc.path}: {exc.reason}") from None
        pixels = imaging.to_uint8(img)[None]
        encoder = self.encoder  # loading it raises its own errors (weights, device)
        try:
            vectors = encoder.encode_uint8(pixels)
        except RuntimeError as exc:  # torch's: a device lost, out of memory
            raise EncoderError(f"the encoder failed on {encoder.device}: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)[0]

    def embed_text(self, text: str) -> np.ndarray:
        """The text's normalized projection: CLIP's tokenizer, then the text tower."""
        return self.embed_texts([text])[0]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized projections [N, dim] of several texts, in one pass of the text tower."""
        from indexer.encoder.tokenizer import load_tokenizer

        if not texts or any(not text.strip() for text in texts):
            raise SearchError("the text query is empty: type some words")
        encoder = self.text_encoder
        ids = load_tokenizer().tokenize(list(texts))
        try:
            vectors = encoder.encode_ids(ids)
        except RuntimeError as exc:  # torch's: a device lost, out of memory
            raise EncoderError(f"the text encoder failed on {encoder.device}: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)

    def query_vector(self, positives: Sequence[Term], negatives: Sequence[Term] = ()) -> np.ndarray:
        """A combined query's vector: each term embedded (normalized), the positives' weighted
        sum minus the negatives', L2-normalized. Checked before any encoder loads."""
        check_terms(positives, negatives)
        terms = [*positives, *negatives]
        texts = [t.text for t in terms if t.text is not None]
        text_vectors = iter(self.embed_texts(texts) if texts else ())
        vectors = [
            next(text_vectors) if t.text is not None else self.embed_query(_image_of(t), t.name)
            for t in terms
        ]
        weights = [t.weight for t in positives] + [-t.weight for t in negatives]
        return combine(vectors, weights)

    def search_terms(
        self,
        positives: Sequence[Term],
        negatives: Sequence[Term] = (),
        k: int = 10,
        filters: Filters | None = None,
    ) -> list[Hit]:
        """Pictures nearest to a combined query (rclip's `a + b - c`), best first."""
        _check_k(k)
        return self.search_vector(self.query_vector(positives, negatives), k, filters)

    def search_text(self, text: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """Pictures that match a text query, best first (CLIP image-text cosine)."""
        return self.search_terms([Term(text=text)], k=k, filters=filters)

    def search_vector(
        self, vector: np.ndarray, k: int = 10, filters: Filters | None = None
    ) -> list[Hit]:
        """Nearest pictures to a vector: one hit per picture (byte-identical copies folded into
        `copies`), best first, at most `k`."""
        _check_k(k)
        if self.settings.milvus:
            return self._search_milvus(vector, k, filters)
        index = self.index
        if index.ntotal == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        want = k
        while True:
            fetch = min(index.ntotal, want * 2 + 8)
            scores, ids = index.search(query, fetch)
            found = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            hits = self._join(found, filters)
            if len(hits) >= k or fetch >= index.ntotal:
                return hits[:k]
            want *= 4

    def search_image(
        self, image: ImageLike, k: int = 10, filters: Filters | None = None
    ) -> list[Hit]:
        """Nearest pictures to a picture (a path, bytes or a PIL image), best first."""
        return self.search_terms([Term(image=image)], k=k, filters=filters)

    def more_like(self, content_id: int, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """Results for an indexed picture, using its stored vector (no re-encoding)."""
        vector = self.catalog.vector_for(content_id)
        if vector is None:
            raise SearchError(f"no indexed picture with id {content_id}")
        return self.search_vector(vector, k, filters)

    @property
    def milvus(self) -> Any:
        """The Milvus collection answering instead of the FAISS file (`settings.milvus`)."""
        if self._milvus is None:
            from indexer.milvus.query import MilvusIndex

            meta = self.catalog.all_meta()
            self._milvus = MilvusIndex(self.settings.milvus, self.settings.milvus_collection, meta)
            self.lagging = self._milvus.lagging
        return self._milvus

    def _search_milvus(self, vector: np.ndarray, k: int, filters: Filters | None) -> list[Hit]:
        """As the FAISS search, from Milvus: filters pushed down, then checked on each path."""
        want = k
        while True:
            found, records, exhausted = self.milvus.search(vector, want * 2 + 8, filters)
            hits = _hits(found, records, filters)
            if len(hits) >= k or exhausted:
                return hits[:k]
            want *= 4

    def _join(self, found: list[tuple[float, int]], filters: Filters | None) -> list[Hit]:
        records: dict[int, list[dict[str, Any]]] = {}
        for rec in self.catalog.records([i for _, i in found]):
            records.setdefault(rec["content_id"], []).append(rec)
        return _hits(found, records, filters)


def _hits(
    found: list[tuple[float, int]],
    records: dict[int, list[dict[str, Any]]],
    filters: Filters | None,
) -> list[Hit]:
    """One hit per found content that has a path the filters accept, best first: its first
    such path (in path order) is `path`, the others are `copies`."""
    hits: list[Hit] = []
    for score, cid in found:
        recs = [r for r in records.get(cid, []) if not filters or filters.accepts(r)]
        if not recs:  # ids deleted since the save are dropped, and those filtered out
            continue
        rec, *others = sorted(recs, key=lambda r: r["path"])
        hits.append(
            Hit(
                rank=len(hits) + 1,
                score=round(score, 6),
                id=cid,
                path=rec["path"],
                size=rec["size"],
                width=rec["width"],
                height=rec["height"],
                format=rec["format"],
                taken_at=rec["taken_at"],
                camera=rec["camera"],
                copies=[r["path"] for r in others],
            )
        )
    return hits


def _check_k(k: int) -> None:
    if k <= 0:
        raise SearchError(f"-k {k}: ask for 1 or more results")


def _image_of(term: Term) -> ImageLike:
    assert term.image is not None  # a Term holds text or image
    return term.image


def search(
    image: ImageLike | None,
    settings: Settings,
    k: int = 10,
    filters: Filters | None = None,
    encoder: Any = None,
    text: str | None = None,
    terms: Sequence[Term] = (),
    minus: Sequence[Term] = (),
    on_note: Callable[[str], None] | None = None,
) -> list[Hit]:
    """One-shot query (loads the encoders and index, answers, closes): `image`, `text` and
    `terms` are added, `minus` subtracted. Options, the query terms and the index are checked
    before an encoder loads. `on_note` gets the text tower's note, if any (`Searcher.text_note`).
    """
    _check_k(k)
    positives = [Term(image=image)] if image is not None else []
    positives += [Term(text=text)] if text is not None else []
    positives += terms
    settings = settings.validate()
    check_terms(positives, minus)
    searcher = Searcher(settings, encoder=encoder)
    try:
        require_content(searcher.catalog, needs=("vectors",))
        hits = searcher.search_terms(positives, minus, k, filters)
        if searcher.text_note and on_note:
            on_note(searcher.text_note)
        return hits
    finally:
        searcher.close()
