"""Query by image or text: encode the query exactly as the build did (images) or with the same
CLIP's text tower (text), search FAISS, join the catalog.

`Searcher` keeps the encoder and the index loaded (the UI holds one per process) and reloads
the index when a build has saved a new one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from indexer import imaging
from indexer.errors import CheckpointError, EncoderError, SearchError
from indexer.files import open_regular, printable_path
from indexer.pins import encoder_identity_changed
from indexer.settings import Settings
from indexer.store import sync
from indexer.store.catalog import Catalog
from indexer.store.home import require_content


@dataclass
class Hit:
    """One result: a path of a matching picture, its cosine score and catalog metadata."""

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
        self.settings = settings
        self.catalog = Catalog(settings.index, readonly=True)
        self._encoder = encoder
        self._text_encoder: Any = None
        self.text_note: str | None = None  # why the text tower could not be checked, if so
        self._index: Any = None
        self._stamp: tuple[float, int] | None = None
        self.lagging = False

    def close(self) -> None:
        self.catalog.close()

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
            encoder = _load_text_tower(self.settings, self.catalog.get_meta("weights_path"), dim)
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
    def embed_query(self, image: str | Path | bytes | Image.Image) -> np.ndarray:
        """The query's normalized projection, preprocessed exactly as `index build` does."""
        if isinstance(image, Image.Image):
            img = image
        else:
            if isinstance(image, str | Path):
                _check_query_file(image)
            try:
                options = imaging.DecodeOptions.from_settings(self.settings, draft=True)
                img, _ = imaging.open_image(image, options)
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
        from indexer.encoder.tokenizer import load_tokenizer

        if not text.strip():
            raise SearchError("the text query is empty: type some words")
        encoder = self.text_encoder
        ids = load_tokenizer().tokenize([text])
        try:
            vectors = encoder.encode_ids(ids)
        except RuntimeError as exc:  # torch's: a device lost, out of memory
            raise EncoderError(f"the text encoder failed on {encoder.device}: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)[0]

    def search_text(self, text: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """Pictures that match a text query, best first (CLIP image-text cosine)."""
        _check_k(k)
        return self.search_vector(self.embed_text(text), k, filters)

    def search_vector(
        self, vector: np.ndarray, k: int = 10, filters: Filters | None = None
    ) -> list[Hit]:
        """Nearest pictures to a vector: one hit per path, best first, at most `k`."""
        _check_k(k)
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
        self, image: str | Path | bytes | Image.Image, k: int = 10, filters: Filters | None = None
    ) -> list[Hit]:
        return self.search_vector(self.embed_query(image), k, filters)

    def more_like(self, content_id: int, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """Results for an indexed picture, using its stored vector (no re-encoding)."""
        vector = self.catalog.vector_for(content_id)
        if vector is None:
            raise SearchError(f"no indexed picture with id {content_id}")
        return self.search_vector(vector, k, filters)

    def _join(self, found: list[tuple[float, int]], filters: Filters | None) -> list[Hit]:
        records: dict[int, list[dict[str, Any]]] = {}
        for rec in self.catalog.records([i for _, i in found]):
            records.setdefault(rec["content_id"], []).append(rec)
        hits: list[Hit] = []
        for score, cid in found:
            for rec in records.get(cid, []):  # ids deleted since the save are dropped
                if filters and not filters.accepts(rec):
                    continue
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
                    )
                )
        return hits


def _check_k(k: int) -> None:
    if k <= 0:
        raise SearchError(f"-k {k}: ask for 1 or more results")


def is_image_query(query: str) -> bool:
    """Whether a CLI query names a picture: an existing path, or one word that looks like a file
    name (a folder separator or an extension: `nope.jpg`), so a typo still says "no such file"."""
    if os.path.lexists(query):
        return True
    return not any(c.isspace() for c in query) and bool(re.search(r"[/\\]|\.\w+$", query))


def _load_text_tower(settings: Settings, build_weights: str | None, dim: int) -> Any:
    """`settings.text_weights`, else the build's weights if that file has a text tower too,
    else OpenAI's ViT-L/14 (downloaded once, sha256 checked) for an index of its width."""
    from indexer.encoder import weights as hub
    from indexer.encoder.text_encoder import load_text_encoder

    def load(path: str | Path, sha256: str | None = None) -> Any:
        return load_text_encoder(path, device=settings.device, dtype=settings.dtype, sha256=sha256)

    if settings.text_weights:
        return load(settings.text_weights)  # its own errors name the file
    if build_weights and os.path.exists(build_weights):
        try:
            return load(build_weights)
        except CheckpointError:
            pass
    if dim == hub.TEXT.dim:
        return load(hub.default_weights(settings.cache_dir, spec=hub.TEXT), hub.TEXT.sha256)
    raise SearchError(
        "text search needs a CLIP text tower: pass --text-weights PATH (a full-CLIP checkpoint: "
        "OpenAI ViT-L-14.pt, an open_clip state dict, or a Hugging Face CLIPModel folder); "
        f"the default, OpenAI's ViT-L/14, projects to {hub.TEXT.dim} dimensions and this index "
        f"holds {dim}"
    )


def check_text_source(encoder: Any, pinned: dict, dim: int, index: str | Path) -> str | None:
    """SearchError when a text tower cannot be the CLIP whose image tower the index pinned:
    another width, or another image projection beside it (fingerprint.py). None when it is
    that CLIP; a note when it cannot be told (a text-only file, an index built before
    fingerprints were recorded): the width matches, so it is used."""
    from indexer.encoder import weights as hub
    from indexer.encoder.fingerprint import same_projection

    text = encoder.identity
    if dim and text["dim"] != dim:
        raise SearchError(
            f"the text tower projects to {text['dim']} dimensions but the index at "
            f"{index} holds {dim}: use the same CLIP as the build"
        )
    pair = (pinned.get("weights_sha256"), text.get("weights_sha256"))
    if pair[0] == pair[1] or pair == (hub.IMAGE.sha256, hub.TEXT.sha256):
        return None  # one full-CLIP file, or the pinned default image and text files
    name = printable_path(os.fspath(encoder.weights_path or "the text weights"))
    same = same_projection(pinned.get("image_fingerprint"), text.get("image_fingerprint"))
    if same is False:
        raise SearchError(
            f"{name}: this text tower belongs to another CLIP than the index at {index} was "
            f"built with (the image projection beside it is not that of the index's encoder, "
            f"{pinned.get('architecture')}, weights {str(pinned.get('weights_sha256'))[:12]}): "
            "pass --text-weights with the full CLIP of the build's image weights"
        )
    if same:
        return None
    why = (
        "the file has no image tower to compare"
        if text.get("image_fingerprint") is None
        else "the index was built before encoder fingerprints were recorded; a build records it"
    )
    return f"{name}: not checked to be the CLIP the index was built with ({why}); its width matches"


def _check_query_file(path: str | Path) -> None:
    """SearchError naming a query path that is missing, a folder or not a regular file (opened
    with files.open_regular: a FIFO never blocks)."""
    name = printable_path(os.fspath(path))
    try:
        with open_regular(path, buffering=0):
            pass
    except (FileNotFoundError, NotADirectoryError):
        raise SearchError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise SearchError(f"{name}: is a folder; give one picture") from None
    except OSError as exc:
        raise SearchError(f"{name}: {exc.strerror or exc}") from None


def search(
    image: str | Path | bytes | Image.Image | None,
    settings: Settings,
    k: int = 10,
    filters: Filters | None = None,
    encoder: Any = None,
    text: str | None = None,
    on_note: Callable[[str], None] | None = None,
) -> list[Hit]:
    """One-shot query by image, or by `text` when it is given (loads the encoder and index,
    answers, closes). Options, the index and the query file are checked before the encoder loads.
    `on_note` gets the text tower's note, if any (`Searcher.text_note`).
    """
    _check_k(k)
    searcher = Searcher(settings.validate(), encoder=encoder)
    try:
        require_content(searcher.catalog, needs=("vectors",))
        if text is not None:
            hits = searcher.search_text(text, k, filters)
            if searcher.text_note and on_note:
                on_note(searcher.text_note)
            return hits
        return searcher.search_image(image, k, filters)
    finally:
        searcher.close()
