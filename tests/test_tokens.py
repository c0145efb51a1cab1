"""Tokens spliced around an edit: equal to a full tokenization for byte-level BPE (the tests' tokenizer and
the shipped default's), and caught by the check for a tokenizer where splicing cannot work."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morph.features.tokens import Splicer, common_prefix, common_suffix, splice_is_exact
from morph.models.tiny import TRAIN_TEXT

DOCUMENT = "\n\n".join(TRAIN_TEXT.strip().split("\n")[:6]) + "\n"
PIECES = ["", " the", "\n", "\n\n", "Fog. ", "é", "lamp,", "  ", " 1865", "\"Oh!\"", "\t", "\r\n", "日本"]


def tokenize_with(tokenizer):
    def tokenize(text: str):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return (np.asarray(enc["input_ids"], dtype=np.int64),
                np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2))
    return tokenize


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from morph.models.tiny import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def default_tokenizer():
    """The default model's tokenizer (SmolLM2's byte-level BPE), from its converted folder."""
    from transformers import AutoTokenizer

    from morph.models import default_model

    if default_model.find_source() is None:
        pytest.skip(default_model.HOW_TO_GET)
    return AutoTokenizer.from_pretrained(str(default_model.ensure()))


@given(st.text(alphabet="ab\n", max_size=30), st.text(alphabet="ab\n", max_size=30))
def test_common_prefix_and_suffix(a, b):
    p = common_prefix(a, b)
    assert a[:p] == b[:p] and (p == min(len(a), len(b)) or a[p] != b[p])
    s = common_suffix(a, b, min(len(a), len(b)) - p)
    assert s <= min(len(a), len(b)) - p and a[len(a) - s:] == b[len(b) - s:]
    assert s == min(len(a), len(b)) - p or a[len(a) - s - 1] != b[len(b) - s - 1]


edits = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 15), st.sampled_from(PIECES)), min_size=1, max_size=5)


def check_splices(tokenize, edits):
    splicer = Splicer(tokenize)
    text = DOCUMENT
    splicer.remember(text, tokenize(text))
    spliced = 0
    for where, delete, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + delete:]
        guess = splicer.quick(text)
        full = tokenize(text)
        if guess is not None:
            spliced += 1
            assert np.array_equal(guess[0], full[0]) and np.array_equal(guess[1], full[1]), repr(text)
        splicer.remember(text, full)
    return spliced


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits)
def test_splice_equals_full_tokenization_for_byte_level_bpe(tiny_tokenizer, edits):
    check_splices(tokenize_with(tiny_tokenizer), edits)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits)
def test_splice_equals_full_tokenization_for_the_default_model(default_tokenizer, edits):
    check_splices(tokenize_with(default_tokenizer), edits)


def test_byte_level_bpe_splices_are_exact_by_construction(tiny_tokenizer, default_tokenizer):
    assert splice_is_exact(tiny_tokenizer) and splice_is_exact(default_tokenizer)


def test_typing_in_the_middle_is_spliced(default_tokenizer):
    tokenize = tokenize_with(default_tokenizer)
    splicer = Splicer(tokenize)
    text = DOCUMENT * 20
    splicer.remember(text, tokenize(text))
    middle = text.index("\n", len(text) // 2)
    typed = text[:middle] + " and so" + text[middle:]
    seen: list[int] = []
    splicer.tokenize = lambda part: seen.append(len(part)) or tokenize(part)
    guess = splicer.quick(typed)
    assert guess is not None and seen and seen[0] < len(text) / 10  # only the lines around the edit
    assert splicer.verify(typed, guess) is guess and splicer.misses == 0


def test_a_tokenizer_that_cannot_be_spliced_is_caught_and_then_left_alone():
    """SentencePiece-style tokenizers mark the start of any text they are given: a splice then differs
    from the full tokenization. The check returns the real tokens, and after two misses no more splices."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    tok.train_from_iterator([TRAIN_TEXT], trainer=trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"],
                                                                      show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    assert not splice_is_exact(fast)
    tokenize = tokenize_with(fast)
    splicer = Splicer(tokenize)
    text = DOCUMENT
    splicer.remember(text, tokenize(text))
    for word in (" quietly", " again"):
        middle = text.index("\n", len(text) // 2)
        text = text[:middle] + word + text[middle:]
        guess = splicer.quick(text)
        assert guess is not None
        full = splicer.verify(text, guess)
        assert full is not guess
        assert np.array_equal(full[0], tokenize(text)[0]) and np.array_equal(full[1], tokenize(text)[1])
        splicer.remember(text, full)
    assert splicer.misses == 2 and splicer.quick(text + "x") is None
