"""CLIP's BPE tokenizer, equal to open_clip's `SimpleTokenizer` (the text tower's input).

Our own code over the real 49,408-token vocabulary (`bpe_simple_vocab_16e6.txt.gz`, shipped as
package data beside this module so text search works offline): ftfy + HTML cleaning, CLIP's
regex, byte-level BPE, SOT/EOT, 77 ids with the EOT kept at position 76, zero padding.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import ftfy
import numpy as np
import regex

__all__ = [
    "CONTEXT_LENGTH",
    "EOT",
    "SOT",
    "VOCAB_PATH",
    "VOCAB_SIZE",
    "Tokenizer",
    "TokenizerError",
    "clean_text",
    "load_tokenizer",
]

VOCAB_PATH = Path(__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # lines 1..48894 of the .gz (line 0 is a header), as in CLIP
VOCAB_SIZE = 49408
SOT = 49406
EOT = 49407
CONTEXT_LENGTH = 77
_SPECIALS = {"<start_of_text>": SOT, "<end_of_text>": EOT}  # open_clip 3.x names, typed in text
_PATTERN = regex.compile(
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)


class TokenizerError(ValueError):
    """The vocabulary file is missing or not CLIP's BPE merges."""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (CLIP's byte-level alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


_BYTE_ENCODER = _bytes_to_unicode()


def clean_text(text: str) -> str:
    """open_clip's 'lower' cleaning: ftfy, HTML unescape twice, whitespace collapse, lower()."""
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """The merge pairs in rank order, or TokenizerError naming the file and the problem."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path}: cannot read the BPE vocabulary ({e})") from e
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
        raise TokenizerError(f"{path}: not CLIP's BPE merges ({N_MERGES} pairs expected)")
    return merges  # type: ignore[return-value]


class Tokenizer:
    """Text -> CLIP token ids, exactly as open_clip's SimpleTokenizer (clean='lower')."""

    def __init__(self, merges: list[tuple[str, str]], cache_size: int = 65536) -> None:
        symbols = list(_BYTE_ENCODER.values())
        symbols += [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        self.encoder: dict[str, int] = {s: i for i, s in enumerate(symbols)}
        self.encoder.update(_SPECIALS)
        if len(self.encoder) != VOCAB_SIZE:
            raise TokenizerError(f"vocabulary has {len(self.encoder)} tokens, not {VOCAB_SIZE}")
        self.ranks: dict[tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self._piece_ids = lru_cache(maxsize=cache_size)(self._piece_ids_uncached)

    @classmethod
    def from_vocab(cls, path: str | Path) -> Tokenizer:
        """A tokenizer over a `bpe_simple_vocab_16e6.txt.gz` file (CLIP's merges)."""
        return cls(_read_merges(Path(path)))

    def bpe(self, piece: str) -> list[str]:
        """The BPE symbols of one byte-encoded piece: merge the lowest-ranked pair until none."""
        word = [*piece[:-1], piece[-1] + "</w>"]
        ranks = self.ranks
        while len(word) > 1:
            pairs = set(zip(word, word[1:], strict=False))
            best = min(pairs, key=lambda p: ranks.get(p, N_MERGES))
            if best not in ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def _piece_ids_uncached(self, piece: str) -> tuple[int, ...]:
        """The ids of one regex piece (a typed special string is its id, as in open_clip)."""
        if piece in _SPECIALS:
            return (_SPECIALS[piece],)
        encoded = "".join(_BYTE_ENCODER[b] for b in piece.encode("utf-8"))
        return tuple(self.encoder[s] for s in self.bpe(encoded))

    def encode(self, text: str) -> list[int]:
        """The BPE ids of a text, cleaned as open_clip does, without start/end tokens."""
        ids: list[int] = []
        for piece in _PATTERN.findall(clean_text(text)):
            ids.extend(self._piece_ids(piece))
        return ids

    def tokenize(
        self, texts: str | Iterable[str], context_length: int = CONTEXT_LENGTH
    ) -> np.ndarray:
        """int64 [N, context_length]: SOT, ids, EOT, zero padding; a long text keeps its
        first context_length - 2 ids and ends with EOT (open_clip's truncation)."""
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, not {context_length}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(texts), context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [SOT, *self.encode(text)][: context_length - 1] + [EOT]
            out[row, : len(ids)] = ids
        return out


@lru_cache(maxsize=4)
def _load_cached(path: Path) -> Tokenizer:
    return Tokenizer.from_vocab(path)


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """The tokenizer over `path`, or over the vocabulary shipped with the package (offline).
    Loaded once per path and shared (it is read-only apart from its BPE cache)."""
    return _load_cached(Path(path).resolve() if path is not None else VOCAB_PATH)
