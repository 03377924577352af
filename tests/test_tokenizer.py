"""CLIP's BPE tokenizer against open_clip's ids on the 44 hard prompts of clip-text-tiny
(curly quotes, mojibake, full-width letters, HTML entities, final sigma, emoji, CJK, truncation)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from indexer.encoder.tokenizer import (
    EOT,
    SOT,
    VOCAB_PATH,
    Tokenizer,
    TokenizerError,
    clean_text,
    load_tokenizer,
)

TEXT_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "clip-text-tiny"
VOCAB = TEXT_FIXTURES / "bpe_simple_vocab_16e6.txt.gz"
CASES = json.loads((TEXT_FIXTURES / "tiny_tokenizer_cases.json").read_text("utf-8"))["cases"]
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_vocab(VOCAB)


def padded(ids: list[int]) -> list[int]:
    return ids + [0] * (77 - len(ids))


def test_every_fixture_prompt_gives_open_clips_ids(tok):
    got = tok.tokenize([c["prompt"] for c in CASES])
    assert got.dtype == np.int64 and got.shape == (len(CASES), 77)
    expected = [padded(c["ids"]) for c in CASES]
    wrong = [
        c["index"] for c, row, exp in zip(CASES, got.tolist(), expected, strict=True) if row != exp
    ]
    assert wrong == [], f"prompts whose ids differ from open_clip's: {wrong}"


@pytest.mark.parametrize("case", CASES, ids=[str(c["index"]) for c in CASES])
def test_cleaning_and_bpe_pieces_match_open_clip(tok, case):
    assert clean_text(case["prompt"]) == case["cleaned"]
    ids = tok.encode(case["prompt"])
    assert ids[:75] == [tok.encoder[t] for t in case["bpe_tokens"]][:75]
    if not case["truncated"]:
        assert [SOT, *ids, EOT] == case["ids"]


def test_long_text_keeps_sot_first_75_and_eot_at_76(tok):
    long_cases = [c for c in CASES if c["truncated"]]
    assert long_cases, "the fixture has truncation cases"
    for case in long_cases:
        row = tok.tokenize(case["prompt"])[0].tolist()
        assert row == case["ids"] and len(row) == 77 and row[76] == EOT
        assert row[1:76] == tok.encode(case["prompt"])[:75]


def test_empty_and_blank_texts_are_sot_eot_then_zeros(tok):
    assert tok.tokenize(["", " \t\n "]).tolist() == [padded([SOT, EOT])] * 2
    assert tok.encode("") == []


def test_shorter_context_truncates_the_same_way(tok):
    row = tok.tokenize(["a photo of a cat on a red sofa"], context_length=5)[0].tolist()
    assert row == [SOT, *tok.encode("a photo of a cat")[:3], EOT]


def test_default_tokenizer_uses_the_shipped_vocabulary(tok):
    assert hashlib.sha256(VOCAB_PATH.read_bytes()).hexdigest() == VOCAB_SHA256
    shipped = load_tokenizer()
    assert shipped is load_tokenizer()  # loaded once
    prompts = [c["prompt"] for c in CASES]
    assert np.array_equal(shipped.tokenize(prompts), tok.tokenize(prompts))


def test_a_file_that_is_not_the_vocabulary_is_refused(tmp_path):
    bad = tmp_path / "vocab.txt.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(TokenizerError, match="vocab.txt.gz"):
        Tokenizer.from_vocab(bad)
    with pytest.raises(TokenizerError, match="missing.gz"):
        Tokenizer.from_vocab(tmp_path / "missing.gz")


def test_a_thousand_queries_tokenize_alike_from_the_cache(tok):
    """Repeated prompts come from the BPE cache: the same ids as the first time (the speed is
    bench/text_encoder.py's query latency)."""
    prompts = [c["prompt"] for c in CASES]
    first = tok.tokenize(prompts)
    queries = [prompts[i % len(prompts)] for i in range(1000)]
    out = tok.tokenize(queries)
    assert out.shape == (1000, 77)
    np.testing.assert_array_equal(out[: len(prompts)], first)
