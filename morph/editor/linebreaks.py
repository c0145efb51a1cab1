"""Lines break at '\\n' only, so every other character of the writer's file is kept as it is.

Textual's Document splits text with `str.splitlines`, which also breaks at VT, FF, FS, GS, RS, NEL (U+0085),
U+2028 and U+2029, and joins the lines back with '\\n': those characters became line breaks on any save.
`NewlineOnlyDocument` keeps them inside their line. They (and the other control characters) are drawn as
visible one-cell stand-ins, `shown`, since a terminal draws them as nothing or acts on them.
"""

from __future__ import annotations

from textual.document._document import Document

# Every C0 control but tab and newline as its Control Picture (U+2400 + code); DEL; and the Unicode breaks.
_STAND_INS = {code: 0x2400 + code for code in range(0x20) if chr(code) not in "\t\n"}
_STAND_INS.update({0x7F: 0x2421, 0x85: 0x2424, 0x2028: 0x21B5, 0x2029: 0x00B6})


def shown(line: str) -> str:
    """`line` as drawn: control characters and the Unicode line breaks as visible stand-ins, same length."""
    return line.translate(_STAND_INS)


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
    """A Textual Document whose lines end at '\\n' only (see the module docstring)."""

    def __init__(self, text: str) -> None:
        super().__init__(_NewlineLines(text))

    def replace_range(self, start, end, text: str):  # type: ignore[override]
        return super().replace_range(start, end, _NewlineLines(text))
