"""Markdown styling as you write: style spans for headings, emphasis, code, links, lists, quotes.

Pure and fast (no Textual): `markdown_spans(text)` gives `MdSpan`s in character offsets of the whole
text; `markdown_line_spans(lines)` gives per-line (start_col, end_col, style_key) lists, which suits
a line-based view. Markup characters get the "markup" style (the theme dims them); content gets its
own style key. Every style key is one of `STYLE_KEYS`, looked up in `MorphTheme.markdown`.

Spans of one construct do not overlap (delimiters are "markup", the inside is content), but
constructs nest (a bold word in a heading): spans are ordered outer before inner (by start, longer
first), so applying them in order lets the inner, more specific style win.

Supported: ATX headings (`# ...`), `**bold**`/`__bold__`, `*italic*`/`_italic_`, `~~strike~~`,
inline code (any backtick run), fenced code blocks (``` or ~~~, state carried across lines),
`[links](url)`, `![images](url)`, `<autolinks>`, bare http(s) URLs, block quotes (nested), list
markers (`-`, `*`, `+`, `1.`, `1)`, task boxes), horizontal rules and backslash escapes. Not
supported (plain text): setext headings, indented code blocks, HTML, reference-style links, tables.
Emphasis uses simple rules close to CommonMark's for ordinary prose, not its full delimiter algorithm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

__all__ = [
    "STYLE_KEYS",
    "FenceState",
    "MdSpan",
    "line_spans",
    "markdown_line_spans",
    "markdown_spans",
]

STYLE_KEYS: tuple[str, ...] = (
    "heading",
    "bold",
    "italic",
    "strike",
    "code",
    "code_block",
    "link",
    "url",
    "quote",
    "list_marker",
    "markup",
    "rule",
)


class MdSpan(NamedTuple):
    """A styled range [start, end) of the whole text."""

    start: int
    end: int
    style_key: str


@dataclass(frozen=True, slots=True)
class FenceState:
    """Inside a fenced code block opened by `length` times `char`."""

    char: str
    length: int


LineSpan = tuple[int, int, str]

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^( {0,3})(#{1,6})(?:([ \t]+)(.*?))?(?:([ \t]+)(#+))?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r" {0,3}>[ ]?")
_LIST = re.compile(r"^([ \t]*)([-*+]|\d{1,9}[.)])([ \t]+|$)(\[[ xX]\](?=[ \t]|$))?")
_ESCAPE = re.compile(r"\\[\\`*_{}\[\]()#+\-.!~<>|]")
_CODE_RUN = re.compile(r"`+")
_LINK = re.compile(r"(!?\[)([^\]\n]*)(\]\()([^()\s]*(?:\([^()\s]*\)[^()\s]*)*(?:[ \t]+\"[^\"]*\")?)(\))")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+)>")
_BARE_URL = re.compile(r"(?<![\w/])https?://[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"]")
_STRIKE = re.compile(r"(~~)(?=\S)(.+?)(?<=\S)(~~)")
_BOLD = re.compile(r"(\*\*)(?=[^\s*])(.+?)(?<=[^\s])(\*\*)|(?<!\w)(__)(?=[^\s_])(.+?)(?<=[^\s])(__)(?!\w)")
_ITALIC = re.compile(
    r"(?<![*\w\\])(\*)(?=[^\s*])(.+?)(?<=[^\s*])(\*)(?!\*)|(?<![_\w\\])(_)(?=[^\s_])(.+?)(?<=[^\s_])(_)(?![_\w])"
)
_MASK = "\x01"  # stands in for characters already consumed (code, URLs, delimiters)
_HAS_INLINE = re.compile(r"[`*_~\[<\\]|https?://")


def _inline(line: str, start: int, end: int) -> list[LineSpan]:
    """Inline spans in line[start:end]."""
    seg = line[start:end]
    if not _HAS_INLINE.search(seg):
        return []
    spans: list[LineSpan] = []
    append = spans.append
    work = list(seg)
    dirty = False

    def mask(a: int, b: int) -> None:
        nonlocal dirty
        work[a:b] = _MASK * (b - a)
        dirty = True

    def current() -> str:
        nonlocal text, dirty
        if dirty:
            text = "".join(work)
            dirty = False
        return text

    def add(a: int, b: int, key: str) -> None:
        if b > a:
            append((start + a, start + b, key))

    text = seg
    if "\\" in seg:
        for m in _ESCAPE.finditer(seg):
            add(m.start(), m.start() + 1, "markup")
            mask(m.start(), m.end())
    # code spans: a backtick run closed by a run of the same length; content is not parsed further
    if "`" in seg:
        text = current()
        pos = 0
        while (m := _CODE_RUN.search(text, pos)) is not None:
            run = m.group()
            close = re.compile(rf"(?<!`){run}(?!`)").search(text, m.end())
            if close is None:
                pos = m.end()
                continue
            add(m.start(), m.end(), "markup")
            add(m.end(), close.start(), "code")
            add(close.start(), close.end(), "markup")
            mask(m.start(), close.end())
            pos = close.end()
    if "[" in seg:
        for m in _LINK.finditer(current()):
            add(m.start(1), m.end(1), "markup")
            add(m.start(2), m.end(2), "link")
            add(m.start(3), m.end(3), "markup")
            add(m.start(4), m.end(4), "url")
            add(m.start(5), m.end(5), "markup")
            mask(m.start(1), m.end(1))
            mask(m.start(3), m.end())
    if "<" in seg:
        for m in _AUTOLINK.finditer(current()):
            add(m.start(), m.start() + 1, "markup")
            add(m.start(1), m.end(1), "link")
            add(m.end() - 1, m.end(), "markup")
            mask(m.start(), m.end())
    if "://" in seg:
        for m in _BARE_URL.finditer(current()):
            add(m.start(), m.end(), "link")
            mask(m.start(), m.end())
    for char, pattern, key in (("~", _STRIKE, "strike"), ("*_", _BOLD, "bold"), ("*_", _ITALIC, "italic")):
        if not any(c in seg for c in char):
            continue
        for m in pattern.finditer(current()):
            o, c, e = (1, 2, 3) if m.group(1) is not None else (4, 5, 6)
            add(m.start(c), m.end(c), key)
            add(m.start(o), m.end(o), "markup")
            add(m.start(e), m.end(e), "markup")
            mask(m.start(o), m.end(o))
            mask(m.start(e), m.end(e))
    return spans


@lru_cache(maxsize=8192)
def _line_spans_cached(line: str, fence: FenceState | None) -> tuple[tuple[LineSpan, ...], FenceState | None]:
    spans: list[LineSpan] = []
    n = len(line)
    if fence is not None:
        stripped = line.strip()
        if (
            len(line) - len(line.lstrip(" ")) <= 3
            and stripped
            and set(stripped) == {fence.char}
            and len(stripped) >= fence.length
        ):
            return ((0, n, "markup"),), None
        return (((0, n, "code_block"),) if n else ()), fence
    m = _FENCE_OPEN.match(line)
    if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
        run = m.group(1)
        return ((0, n, "markup"),), FenceState(run[0], len(run))
    if not line.strip():
        return (), None
    if _RULE.match(line):
        return ((0, n, "rule"),), None

    pos = 0
    quote_start = None
    while True:
        q = _QUOTE.match(line, pos)
        if not q:
            break
        if quote_start is None:
            quote_start = q.start()
        gt = line.index(">", q.start())
        spans.append((gt, gt + 1, "markup"))
        pos = q.end()
    if quote_start is not None:
        spans.insert(0, (quote_start, n, "quote"))

    hm = _HEADING.match(line[pos:]) if "#" in line else None
    if hm is not None:
        h = _Shifted(hm, pos)
        spans.append((h.start(2), h.end(2), "markup"))
        content_start = h.start(4) if h.group(4) is not None else h.end(2)
        content_end = h.end(4) if h.group(4) is not None else h.end(2)
        if content_end > content_start:
            spans.append((content_start, content_end, "heading"))
            spans.extend(_inline(line, content_start, content_end))
        if h.group(6) is not None:
            spans.append((h.start(6), h.end(6), "markup"))
        return tuple(_order(spans)), None

    lst = _LIST.match(line[pos:])
    if lst is not None:
        spans.append((pos + lst.start(2), pos + lst.end(2), "list_marker"))
        if lst.group(4) is not None:
            spans.append((pos + lst.start(4), pos + lst.end(4), "list_marker"))
        pos += lst.end()
    spans.extend(_inline(line, pos, n))
    return tuple(_order(spans)), None


class _Shifted:
    """A heading match on line[pos:] seen with offsets in the whole line."""

    def __init__(self, m: re.Match[str], shift: int) -> None:
        self._m, self._s = m, shift

    def group(self, i: int) -> str | None:
        return self._m.group(i)

    def start(self, i: int) -> int:
        return self._m.start(i) + self._s

    def end(self, i: int) -> int:
        return self._m.end(i) + self._s


def _order(spans: list[LineSpan]) -> list[LineSpan]:
    return sorted(spans, key=lambda s: (s[0], -s[1]))


def line_spans(line: str, fence: FenceState | None = None) -> tuple[list[LineSpan], FenceState | None]:
    """Spans of one line (columns), given the fence state before it; returns the state after it."""
    spans, state = _line_spans_cached(line, fence)
    return list(spans), state


def markdown_line_spans(lines: Sequence[str]) -> list[list[LineSpan]]:
    """Per line, its spans as (start_col, end_col, style_key), in character columns."""
    out: list[list[LineSpan]] = []
    fence: FenceState | None = None
    for line in lines:
        spans, fence = _line_spans_cached(line, fence)
        out.append(list(spans))
    return out


def markdown_spans(text: str) -> list[MdSpan]:
    """All spans of `text` ('\\n' line breaks) in character offsets of the whole text."""
    result: list[MdSpan] = []
    offset = 0
    fence: FenceState | None = None
    for line in text.split("\n"):
        spans, fence = _line_spans_cached(line, fence)
        for a, b, key in spans:
            result.append(MdSpan(offset + a, offset + b, key))
        offset += len(line) + 1
    return result
