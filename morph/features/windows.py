"""Long texts analysed a window at a time, so that memory follows the window, not the text.

An analysis holds, per token, the hook activations and the SAE's features (about 1.7 KB a token for the
default model), and a whole-file tokenization holds Python objects for every token: a 50 MB file (about 12
million tokens) would need tens of GB at once. `cut_windows` cuts a text into consecutive windows of at most
`size` characters; each is analysed on its own, with up to `context` characters before it as left context
(analysed along, not reported), and its results are written out before the next window is read.

Cuts fall where no token can straddle them (the argument of morph.features.tokens): after a blank line if
there is one in the second half of the window, else at the start of a line whose first character is visible,
else before a space that begins a word, and only where none of these exists (a run of `size` characters
without a space) at the window's edge.
"""

from __future__ import annotations

import re

WINDOW_CHARS = 100_000  # about 25,000 tokens of English: ~100 MB of analysis for the default model
# More than a segment of the analyzer (1,024 tokens) and its left context: an anchor block almost always falls
# in the context, so the window proper is cut into the segments of the whole text and its features are those
# of the whole text (morph.features.analysis). 6% more work for a default window.
CONTEXT_CHARS = 6_000

_PARAGRAPH_START = re.compile(r"\n[ \t\r\f\v]*\n+(?=\S)")  # a blank line, then a visible character
_LINE_START = re.compile(r"\n(?=\S)")
_WORD_START = re.compile(r" (?=\S)")


def _last_match_end(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    last = None
    for match in pattern.finditer(text, lo, hi):
        last = match
    return None if last is None else last.end()


def cut_point(text: str, start: int, size: int) -> int:
    """Where the window starting at `start` ends: at most `size` characters on (see the module docstring)."""
    hi = start + size
    if hi >= len(text):
        return len(text)
    lo = start + size // 2
    # The look-ahead of each pattern needs the character at hi: search up to hi + 1, keep cuts <= hi.
    for pattern, back in ((_PARAGRAPH_START, 0), (_LINE_START, 0), (_WORD_START, 1)):
        end = _last_match_end(pattern, text, lo, hi + 1)
        if end is not None:
            return end - back  # a word start cuts before its space: " word" is one token
    cut = hi
    if text[cut - 1] == "\r" and text[cut] == "\n":
        cut -= 1
    return cut


def cut_windows(text: str, size: int = WINDOW_CHARS) -> list[tuple[int, int]]:
    """Consecutive (start, end) character spans covering `text`, each at most `size` characters long."""
    if size < 2:
        raise ValueError("a window holds at least 2 characters")
    spans = []
    start = 0
    while start < len(text):
        end = cut_point(text, start, size)
        spans.append((start, end))
        start = end
    return spans


def context_start(text: str, start: int, context: int = CONTEXT_CHARS) -> int:
    """Where the left context of the window starting at `start` begins: about `context` characters before it,
    moved forward to a line start or a word start."""
    if start <= context:
        return 0
    lo = start - context
    for pattern, back in ((_LINE_START, 0), (_WORD_START, 1)):
        match = pattern.search(text, lo, start)
        if match is not None and match.end() - back < start:
            return match.end() - back
    return lo
