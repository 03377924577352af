"""Combined queries (rclip's `+` / `-`): terms that are words or pictures, each with a weight,
added (positives) or subtracted (negatives), scored as their normalized weighted sum.

`Term`s are what `Searcher.search_terms` takes; `parse_words` turns the command line's words
into them; `check_terms` refuses a query before any encoder loads.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from indexer.errors import SearchError
from indexer.files import open_regular, printable_path

ImageLike = str | Path | bytes | Image.Image
# a taken_at prefix a date filter may give: YYYY[-MM[-DD[ HH:MM:SS]]] (digits and -:T. only)
DATE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2}([T ][0-9:.]{1,15})?)?)?")
SEPARATOR = "+"  # a command-line argument of its own between two query terms


def check_date(value: str | None, name: str) -> str | None:
    """`value` when it is a date that exists (YYYY, YYYY-MM or YYYY-MM-DD, then optionally a
    time), else SearchError naming `name`: 2009-13 and 2009-02-30 are refused, not read as
    some other day."""
    if value is None or value == "":
        return None
    text = str(value)
    ok = DATE.fullmatch(text) is not None
    if ok:
        day, _, clock = text.replace("T", " ").partition(" ")
        y, m, d = (int(p) for p in (day + "-01-01")[:10].split("-"))
        try:
            datetime.date(y, m, d)
            if clock:
                datetime.time.fromisoformat(clock)
        except ValueError:
            ok = False
    if not ok:
        raise SearchError(
            f"{name} {printable_path(text)}: not a date; use YYYY, YYYY-MM or YYYY-MM-DD "
            "(a day that exists, e.g. 2009-02-28)"
        )
    return text


@dataclass(frozen=True)
class Term:
    """One part of a query: words (`text`) or a picture (`image`: a path, bytes or a PIL
    image), with a weight > 0; whether it adds or subtracts is said by where it is passed."""

    text: str | None = None
    image: ImageLike | None = None
    weight: float = 1.0
    name: str | None = None  # picture bytes' file name: its suffix says RAW (an upload's name)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.image is None):
            raise ValueError("a query Term holds either text or image, not both or neither")

    @property
    def label(self) -> str:
        """How to name the term to a user: its words, or its file name."""
        if self.text is not None:
            return self.text
        if isinstance(self.image, str | Path):
            return os.fspath(self.image)
        return "picture"


def check_terms(positives: Sequence[Term], negatives: Sequence[Term] = ()) -> None:
    """SearchError for a query that cannot be answered: nothing to search for, only terms to
    subtract, empty words, a bad weight, a picture path that is missing or not a file."""
    if not positives:
        if negatives:
            raise SearchError(
                "nothing to search for: --minus only subtracts; add words or a picture too"
            )
        raise SearchError("the query is empty: give words or a picture to search for")
    for term in [*positives, *negatives]:
        weight = term.weight
        if not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
            raise SearchError(f"weight {weight!r} of {term.label!r}: use a number > 0")
        if term.text is not None and not term.text.strip():
            raise SearchError("the text query is empty: type some words")
        if isinstance(term.image, str | Path):
            check_query_file(term.image)


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The L2-normalized weighted sum of unit vectors (negative weights subtract), float32.

    Refused when the terms cancel out (the same words added and subtracted)."""
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float64))
    for vector, weight in zip(vectors, weights, strict=True):
        total += float(weight) * np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(total))
    if norm <= 1e-6 * sum(abs(float(w)) for w in weights):
        raise SearchError("the query's terms cancel out: nothing is left to search for")
    return (total / norm).astype(np.float32)


def parse_words(
    args: Sequence[str],
    minus: Sequence[str] = (),
    force: Literal["text", "image"] | None = None,
) -> tuple[list[Term], list[Term]]:
    """Command-line words → (positives, negatives). A `+` argument separates terms; an argument
    alone between separators is a picture when `is_image_query` says so; among several, each
    existing file is a picture and the other words join into one text. `force` makes every
    argument text (a term per `+`) or a picture. Each --minus value is one term."""
    groups: list[list[str]] = [[]]
    for arg in args:
        if arg == SEPARATOR:
            groups.append([])
        else:
            groups[-1].append(arg)
    if args and any(not group for group in groups):
        raise SearchError("`+` needs words or a picture on each side")
    positives = [term for group in groups if group for term in _group_terms(group, force)]
    negatives = [term for value in minus for term in _group_terms([value], force)]
    return positives, negatives


def _group_terms(group: list[str], force: str | None) -> list[Term]:
    """The terms of the arguments between two separators (see `parse_words`)."""
    if force == "text":
        return [Term(text=" ".join(group))]
    if force == "image":
        return [Term(image=arg) for arg in group]
    if len(group) == 1:
        arg = group[0]
        return [Term(image=arg) if is_image_query(arg) else Term(text=arg)]
    terms: list[Term] = []
    words: list[str] = []
    for arg in group:
        if os.path.lexists(arg) and not os.path.isdir(arg):
            if words:
                terms.append(Term(text=" ".join(words)))
                words = []
            terms.append(Term(image=arg))
        else:
            words.append(arg)
    if words:
        terms.append(Term(text=" ".join(words)))
    return terms


def is_image_query(query: str) -> bool:
    """Whether a CLI query names a picture: an existing path, or one word that looks like a file
    name (a folder separator or an extension: `nope.jpg`), so a typo still says "no such file"."""
    if os.path.lexists(query):
        return True
    return not any(c.isspace() for c in query) and bool(re.search(r"[/\\]|\.\w+$", query))


def check_query_file(path: str | Path) -> None:
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
