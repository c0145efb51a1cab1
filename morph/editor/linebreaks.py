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

from textual.document._document import Document

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


class NewlineOnlyDocument(Document):
    """A Textual Document whose lines end at '\\n' only, holding controls as one-cell stand-ins (see above)."""

    def __init__(self, text: str) -> None:
        self._hiding = not _holds_stand_ins(text)
        self._holds = False  # whether a stand-in was ever put in: until then nothing needs translating back
        super().__init__(_NewlineLines(self._hide(text)))

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
        return super().replace_range(start, end, _NewlineLines(self._hide(text)))

    def _stop_hiding(self) -> None:
        self._lines[:] = [self._reveal(line) for line in self._lines]
        self._hiding = self._holds = False
