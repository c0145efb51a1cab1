r"""Tokenizing a document after an edit: the lines around the edit are re-tokenized and spliced in.

Tokenizing a whole 8,000-token document takes ~15-20 ms on a laptop core, a good part of the time from a
pause to the edited paragraph's highlights. After an edit, `Splicer.quick` re-tokenizes only the text from
a line start a line before the edit to a line start a line after it (plus a few characters of look-ahead),
and keeps the tokens of the previous text on both sides, their offsets shifted. The cut points are
*anchors*: line starts whose first character is visible.

Exact by construction for byte-level BPE with GPT-2's pre-tokenizer regex and no normalizer (GPT-2, the
shipped default): BPE merges stay inside a pre-token, and a pre-token never spans an anchor, because the
newline before it can only be matched by the regex's whitespace alternatives, which stop before a visible
character (the one look-ahead, `\s+(?!\S)`, sees the same visible character at a left anchor in the old
and the new text, and the characters past a right anchor are tokenized along and dropped). Property tests
check this against full tokenizations (tests/test_tokens.py). For every other tokenizer a splice is only a
first guess (SentencePiece models may merge across lines; some mark the start of any text they are given):
the analyzer shows it for the cursor's block, then checks it against the full tokenization before the rest,
and a tokenizer whose splices miss twice is not spliced again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

Tokens = tuple[np.ndarray, np.ndarray]  # ids [n], character offsets [n, 2]
_Seq = TypeVar("_Seq", str, tuple[int, ...])

CONTEXT_LINES = 1  # whole lines re-tokenized on each side of the edited lines
MAX_SCAN_LINES = 8  # how far to look for a line start that begins with a visible character
LOOKAHEAD_CHARS = 16
GIVE_UP_AFTER_MISSES = 2


def common_prefix(a: _Seq, b: _Seq, limit: int | None = None) -> int:
    """Length of the longest common prefix of two strings (or two tuples of token ids), at most `limit`
    (binary search over slices: C-speed comparisons)."""
    n = min(len(a), len(b)) if limit is None else max(0, min(limit, len(a), len(b)))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the longest common suffix, at most `limit` (the same search over slices of the ends, no
    reversed copies: a line may be megabytes long)."""
    n = max(0, min(limit, len(a), len(b)))
    if a[len(a) - n:] == b[len(b) - n:]:
        return n
    lo, hi = 0, n  # the last lo characters agree, the last hi do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[len(a) - mid:] == b[len(b) - mid:]:
            lo = mid
        else:
            hi = mid
    return lo


def _is_anchor(text: str, i: int) -> bool:
    """A line start whose first character is visible (or the very start or end of the text)."""
    return i <= 0 or i >= len(text) or (text[i - 1] == "\n" and not text[i].isspace())


def anchor_before(text: str, pos: int) -> int | None:
    """An anchor at or before the start of the line `CONTEXT_LINES` above the one holding `pos`."""
    i = text.rfind("\n", 0, pos) + 1  # start of pos's line
    for _ in range(CONTEXT_LINES):
        i = text.rfind("\n", 0, max(i - 1, 0)) + 1 if i > 0 else 0
    for _ in range(MAX_SCAN_LINES):
        if _is_anchor(text, i):
            return i
        i = text.rfind("\n", 0, i - 1) + 1
    return None


def anchor_after(text: str, pos: int) -> int | None:
    """An anchor at or after the start of the line `CONTEXT_LINES` below the one holding `pos`."""
    i = pos
    for _ in range(CONTEXT_LINES + 1):
        j = text.find("\n", i)
        i = len(text) if j < 0 else j + 1
    for _ in range(MAX_SCAN_LINES):
        if _is_anchor(text, i):
            return i
        j = text.find("\n", i)
        i = len(text) if j < 0 else j + 1
    return None


def splice_is_exact(tokenizer: PreTrainedTokenizerFast) -> bool:
    """Whether splices of this (Hugging Face fast) tokenizer equal full tokenizations (module docstring)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    from tokenizers import models, pre_tokenizers

    pre = backend.pre_tokenizer
    return (backend.normalizer is None and isinstance(backend.model, models.BPE)
            and isinstance(pre, pre_tokenizers.ByteLevel) and pre.use_regex and not pre.add_prefix_space)


def _boundary(offsets: np.ndarray, at: int) -> int | None:
    """The index of the first token starting at or after character `at`, if no token spans `at`."""
    i = int(np.searchsorted(offsets[:, 0], at, side="left"))
    if i > 0 and offsets[i - 1, 1] > at:
        return None
    return i


class Splicer:
    """Remembers the last full tokenization and splices the next text's tokens from it."""

    def __init__(self, tokenize: Callable[[str], Tokens], exact: bool = False) -> None:
        self.tokenize = tokenize
        self.splices_are_exact = exact  # no check needed (see splice_is_exact)
        self._last: tuple[str, np.ndarray, np.ndarray] | None = None
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.misses < GIVE_UP_AFTER_MISSES

    def remember(self, text: str, tokens: Tokens) -> None:
        """Record a full (or verified) tokenization of `text`."""
        self._last = (text, tokens[0], tokens[1])

    def exact(self, text: str) -> Tokens | None:
        """The remembered tokens, when `text` is the remembered text."""
        if self._last is not None and self._last[0] == text:
            return self._last[1], self._last[2]
        return None

    def quick(self, text: str) -> Tokens | None:
        """The tokens of `text` spliced from the last full tokenization, or None where no splice applies.
        Unless `splices_are_exact`, not guaranteed equal to `tokenize(text)`: check with `verify`."""
        if self._last is None or not self.enabled:
            return None
        old, old_ids, old_offsets = self._last
        p = common_prefix(old, text)
        s = common_suffix(old, text, min(len(old), len(text)) - p)
        left, right = anchor_before(text, p), anchor_after(text, len(text) - s)
        if left is None or right is None or right - left > len(text) // 2:
            return None  # no anchors near the edit, or most of the text changed: tokenize it all
        delta = len(text) - len(old)
        i0, i1 = _boundary(old_offsets, left), _boundary(old_offsets, right - delta)
        if i0 is None or i1 is None or i1 < i0:
            return None
        # A few characters past `right` go along: a pre-tokenizer looks ahead (GPT-2's splits "\n\n" before
        # a word, not at the end of a text), and only the tokens that start before `right` are kept.
        mid_ids, mid_offsets = self.tokenize(text[left:min(len(text), right + LOOKAHEAD_CHARS)])
        mid_offsets = mid_offsets + left
        keep = _boundary(mid_offsets, right)
        if keep is None:
            return None
        mid_ids, mid_offsets = mid_ids[:keep], mid_offsets[:keep]
        ids = np.concatenate([old_ids[:i0], mid_ids, old_ids[i1:]])
        offsets = np.concatenate([old_offsets[:i0], mid_offsets, old_offsets[i1:] + delta])
        return ids, offsets.reshape(-1, 2)

    def verify(self, text: str, guess: Tokens) -> Tokens:
        """`guess` itself when it equals the full tokenization of `text`; else that tokenization (a miss)."""
        full = self.tokenize(text)
        if np.array_equal(full[0], guess[0]) and np.array_equal(full[1], guess[1]):
            return guess
        self.misses += 1
        return full
