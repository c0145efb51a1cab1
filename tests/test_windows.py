"""Long texts cut into windows (morph.features.windows): the windows cover the text, none is longer than asked,
and no token straddles a cut, so that tokenizing window by window gives the whole text's tokens."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morph.features.windows import context_start, cut_point, cut_windows

WORDS = ["the", "river", "ran", "past", "mill.", "Holmes", "lit", "his", "pipe;", "1865", "“quiet”", "naïve", "—"]


def prose(rng: random.Random, n_paragraphs: int) -> str:
    paragraphs = []
    for _ in range(n_paragraphs):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(rng.randint(1, 4))]
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs) + "\n"


def test_windows_cover_the_text_and_respect_the_size():
    text = prose(random.Random(1), 300)
    for size in (100, 1_000, 7_777, len(text), len(text) * 2):
        spans = cut_windows(text, size)
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        assert all(a == b for (_, a), (b, _) in zip(spans, spans[1:]))
        assert all(0 < end - start <= size for start, end in spans)
    assert cut_windows("", 100) == []
    assert cut_windows(text, len(text)) == [(0, len(text))]


def test_cuts_prefer_paragraphs_then_lines_then_words_then_anything():
    para = "word " * 30 + "\n\n" + "x" * 10
    assert para[cut_point(para, 0, 160) - 2:cut_point(para, 0, 160)] == "\n\n"  # after the blank line
    lines = ("word " * 12 + "\n") * 4
    cut = cut_point(lines, 0, 150)
    assert lines[cut - 1] == "\n" and lines[cut] == "w"
    line = "word " * 100
    cut = cut_point(line, 0, 150)
    assert line[cut] == " " and line[cut + 1] == "w" and cut <= 150  # " word" stays whole
    blob = "x" * 500
    assert cut_point(blob, 0, 150) == 150
    crlf = "x" * 149 + "\r\n" + "x" * 100
    assert cut_point(crlf, 0, 150) == 149  # never between CR and LF


def test_context_starts_at_a_line_or_word_start():
    text = "alpha beta\ngamma delta epsilon zeta eta theta"
    start = text.index("theta")
    assert context_start(text, start, 1_000) == 0
    begin = context_start(text, start, 20)  # no line start in reach: a word start
    assert start - 20 <= begin < start and text[begin] == " " and text[begin + 1] != " "
    begin = context_start(text, start, 35)  # a line start first
    assert text[begin - 1] == "\n" and text[begin:].startswith("gamma")


@pytest.fixture(scope="module")
def tokenizer(tiny_dirs):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dirs["model"])


def _tokens(tokenizer, text: str, base: int = 0) -> list[tuple[int, str]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [(base + a, tokenizer.convert_ids_to_tokens(i)) for i, (a, _) in zip(enc["input_ids"], enc["offset_mapping"])]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(40, 400))
def test_no_token_straddles_a_cut(tokenizer, seed, size):
    """Byte-level BPE (the default's, and the tests' tokenizer): the windows' tokens are the text's tokens."""
    rng = random.Random(seed)
    text = prose(rng, rng.randint(1, 12))
    if rng.random() < 0.3:
        text = text.replace("\n", " ")  # one long line: cuts before spaces
    pieces = [tok for start, end in cut_windows(text, size) for tok in _tokens(tokenizer, text[start:end], start)]
    assert pieces == _tokens(tokenizer, text)
