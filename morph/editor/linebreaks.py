"""Lines break at '\\n' only, so every other character of the writer's file is kept as it is.

Textual's Document splits text with `str.splitlines`, which also breaks at VT, FF, FS, GS, RS, NEL (U+0085),
U+2028 and U+2029, and joins the lines back with '\\n': those characters became line breaks on any save.
`NewlineOnlyDocument` keeps them inside their line.

Control characters (C0 but tab and newline, DEL, C1) and U+2028/U+2029 are drawn as visible one-cell
pictures: a terminal draws them as nothing, or acts on them. Textual measures lines by the characters the
document holds, so inside the document each is held as a stand-in of one cell (a private-use character of
plane 16); `text` and `get_text_range`, all that leaves the document, give the writer's characters back. A
text that already holds one of those private-use characters is held as it is (its controls then draw one
cell wider than Textual measures them, which can hide the end of such a line, but no character changes).
"""

from __future__ import annotations

import re
from typing import Callable

from textual.document._document import Document
from textual.widgets.text_area import EditResult

_CONTROLS = [c for c in range(0x20) if chr(c) not in "\t\n\r"] + [0x7F] + list(range(0x80, 0xA0)) + [0x2028, 0x2029]
_STAND_IN_BASE = 0x10FF00
_HIDE = {code: _STAND_IN_BASE + k for k, code in enumerate(_CONTROLS)}
_REVEAL = {stand_in: code for code, stand_in in _HIDE.items()}


def _picture(code: int) -> int:
    """The visible one-cell character a control is drawn as."""
    if code < 0x20:
        return 0x2400 + code  # Control Pictures: ␋ ␌ ␜ ␝ ␞ ...
    return {0x7F: 0x2421, 0x85: 0x2424, 0x2028: 0x21B5, 0x2029: 0x00B6}.get(code, 0x2426)  # ␡ ␤ ↵ ¶ ␦


_DRAW = {code: _picture(code) for code in _CONTROLS}
_DRAW.update({stand_in: _picture(code) for stand_in, code in _REVEAL.items()})


_ANY_STAND_IN = re.compile(f"[{chr(_STAND_IN_BASE)}-{chr(_STAND_IN_BASE + len(_CONTROLS) - 1)}]")
_ANY_CONTROL = re.compile("[" + "".join(re.escape(chr(code)) for code in _CONTROLS) + "]")
_ANY_DRAWN = re.compile(f"{_ANY_CONTROL.pattern}|{_ANY_STAND_IN.pattern}")


def shown(line: str) -> str:
    """`line` (as the document holds it, or as the writer wrote it) as drawn: controls as pictures, same length."""
    return line if _ANY_DRAWN.search(line) is None else line.translate(_DRAW)  # most lines have none


def _holds_stand_ins(text: str) -> bool:
    return _ANY_STAND_IN.search(text) is not None


def _hidden(match: re.Match[str]) -> str:
    return chr(_HIDE[ord(match.group())])


def _revealed(match: re.Match[str]) -> str:
    return chr(_REVEAL[ord(match.group())])


class _NewlineLines(str):
    """A str whose `splitlines` breaks at '\\n' (and '\\r\\n' or '\\r', as typed or pasted) and nowhere else.

    Document's `__init__` and `replace_range` split their text with `splitlines()` (dropping a final empty
    line, which they add back themselves); this is the one behaviour they need changed."""

    def splitlines(self, keepends: bool = False) -> list[str]:  # type: ignore[override]
        lines = str(self).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines[-1] == "":
            lines.pop()
        return lines


_LAST_SPACE = re.compile(r".*\s", re.S)  # greedy: up to the last whitespace character
_WORD_REST = re.compile(r"\S*")


def _word_start(line: str, column: int) -> int:
    """The start of the word at `column` (`column` itself after whitespace): looked for a little way back first."""
    reach = 64
    while True:
        lo = max(0, column - reach)
        match = _LAST_SPACE.match(line, lo, column)
        if match is not None:
            return match.end()
        if lo == 0:
            return 0
        reach *= 8


class NewlineOnlyDocument(Document):
    """A Textual Document whose lines end at '\\n' only, holding controls as one-cell stand-ins (see above)."""

    def __init__(self, text: str) -> None:
        self._hiding = not _holds_stand_ins(text)
        self._holds = False  # whether a stand-in was ever put in: until then nothing needs translating back
        self._words: int | None = None  # len(text.split()), once counted (see counts)
        self._chars = 0
        self.replaced: Callable[[tuple[int, int], tuple[int, int], EditResult], None] | None = None
        """Told of every replacement (its top and bottom before it, and its result), once it is made."""
        super().__init__(_NewlineLines(self._hide(text)))

    def counts(self) -> tuple[int, int]:
        """(len(text.split()), len(text)): counted once, then kept up to date by each edit, which counts the
        words around it again (a 50 MB text takes ~1 s to count; a keystroke, microseconds)."""
        if self._words is None:
            lines = self._lines
            self._words = sum(len(self._reveal(line).split()) for line in lines)
            self._chars = sum(map(len, lines)) + len(lines) - 1
        return self._words, self._chars

    def snapshot(self) -> Callable[[], str]:
        """The text as it is now, to be put together later, in another thread: a copy of the list of lines
        (the lines themselves never change), joined a few thousand lines at a time (each join holds the
        interpreter; the UI thread gets it back between them)."""
        lines, newline, holds = list(self._lines), self._newline, self._holds

        def text() -> str:
            step = 4096
            parts = [newline.join(lines[i:i + step]) for i in range(0, len(lines), step)]
            joined = newline.join(parts)
            return _ANY_STAND_IN.sub(_revealed, joined) if holds else joined

        return text

    # A regular expression finds the few controls of a text far faster than str.translate looks up every
    # character (1 MB: ~2 ms against ~110 ms), and `text` is read on cursor moves.
    def _hide(self, text: str) -> str:
        if not self._hiding or _ANY_CONTROL.search(text) is None:
            return text
        self._holds = True
        return _ANY_CONTROL.sub(_hidden, text)

    def _reveal(self, text: str) -> str:
        return _ANY_STAND_IN.sub(_revealed, text) if self._holds else text

    @property
    def text(self) -> str:
        return self._reveal(super().text)

    def get_text_range(self, start, end) -> str:  # type: ignore[override]
        return self._reveal(super().get_text_range(start, end))

    def replace_range(self, start, end, text: str):  # type: ignore[override]
        if self._hiding and _holds_stand_ins(text):
            self._stop_hiding()  # the stand-ins' own characters came in: from now on hold every character as is
        if self._words is None:
            result = super().replace_range(start, end, _NewlineLines(self._hide(text)))
            self._tell(start, end, result)
            return result
        # The words and characters of the edited stretch, widened to whitespace or line ends on both sides (a word
        # is never partly in it), before and after.
        (top_row, top_column), (bottom_row, bottom_column) = sorted((start, end))
        lines = self._lines
        left = _word_start(lines[top_row], top_column) if top_row < len(lines) else top_column
        right = _WORD_REST.match(lines[bottom_row], bottom_column).end() - bottom_column \
            if bottom_row < len(lines) else 0
        before = self.get_text_range((top_row, left), (bottom_row, bottom_column + right))
        result = super().replace_range(start, end, _NewlineLines(self._hide(text)))
        end_row, end_column = result.end_location
        after = self.get_text_range((top_row, left), (end_row, end_column + right))
        self._words += len(after.split()) - len(before.split())
        self._chars += len(after) - len(before)
        self._tell(start, end, result)
        return result

    def _tell(self, start: tuple[int, int], end: tuple[int, int], result: EditResult) -> None:
        if self.replaced is not None:
            top, bottom = sorted((start, end))
            self.replaced(top, bottom, result)

    def _stop_hiding(self) -> None:
        self._lines[:] = [self._reveal(line) for line in self._lines]
        self._hiding = self._holds = False
