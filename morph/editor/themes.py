"""Morph themes: a Textual `Theme`, a feature-highlight palette and Markdown styles, from TOML files.

Built-in themes are `themes/*.toml` at the repository root, installed as the `morph_themes` package
data (see pyproject.toml); user themes are `*.toml` in the user's theme folder
(`morph.config.themes_dir()`). A theme file:

    name = "my-theme"            # optional: the file name without .toml
    dark = true
    highlights = ["#ee6969", ...] # >= 12 distinct colours that read on the background
    [colors]                     # primary is required; the others are optional
    primary = "#7aa2f7"          # secondary accent foreground background surface panel
                                 # success warning error boost
    [variables]                  # optional Textual theme variables
    "footer-key-foreground" = "#e0af68"
    [markdown]                   # Rich style strings, keys from morph.editor.markdown.STYLE_KEYS
    heading = "bold #7aa2f7"     # (missing keys fall back to plain defaults)

A bad file is reported as one line in the errors list, never raised.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
import importlib.util
from pathlib import Path
from typing import Any, Iterable

from rich.errors import StyleSyntaxError
from rich.style import Style
from textual.color import Color, ColorParseError
from textual.theme import Theme

from morph.editor.markdown import STYLE_KEYS

__all__ = [
    "BUILTIN_THEME_NAMES",
    "DEFAULT_THEME",
    "FALLBACK_MARKDOWN",
    "MIN_HIGHLIGHTS",
    "MorphTheme",
    "ThemeError",
    "builtin_themes_dir",
    "load_themes",
    "parse_theme",
]

DEFAULT_THEME = "morph-dark"
BUILTIN_THEME_NAMES = ("morph-dark", "morph-light", "morph-paper", "morph-contrast")
MIN_HIGHLIGHTS = 12
_COLOR_KEYS = (
    "primary", "secondary", "accent", "foreground", "background", "surface", "panel",
    "success", "warning", "error", "boost",
)
_TOP_KEYS = {"name", "dark", "highlights", "colors", "variables", "markdown", "luminosity_spread", "text_alpha"}

FALLBACK_MARKDOWN: dict[str, str] = {
    "heading": "bold",
    "bold": "bold",
    "italic": "italic",
    "strike": "strike",
    "code": "bold",
    "code_block": "",
    "link": "underline",
    "url": "dim",
    "quote": "italic",
    "list_marker": "bold",
    "markup": "dim",
    "rule": "dim",
}


class ThemeError(ValueError):
    """A theme file is invalid (the message is one line)."""


@dataclass(frozen=True)
class MorphTheme:
    """Everything Morph draws with: register `textual_theme` with the app, colour features from
    `highlights`, style Markdown spans with `markdown[style_key]` (Rich style strings)."""

    textual_theme: Theme
    highlights: list[str]
    markdown: dict[str, str]
    source: str = field(default="", compare=False)
    """Where the theme came from (a file path or 'builtin:<file>')."""

    @property
    def name(self) -> str:
        return self.textual_theme.name

    @property
    def dark(self) -> bool:
        return self.textual_theme.dark

    def highlight(self, index: int) -> str:
        """The highlight colour for a feature index (cycles through the palette)."""
        return self.highlights[index % len(self.highlights)]

    def markdown_style(self, key: str) -> Style:
        """The parsed Rich style for a Markdown style key (a null style if unknown)."""
        return _parse_style_cached(self.markdown.get(key, ""))


_style_cache: dict[str, Style] = {}


def _parse_style_cached(text: str) -> Style:
    style = _style_cache.get(text)
    if style is None:
        style = Style.parse(text) if text else Style.null()
        _style_cache[text] = style
    return style


def _color(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"{what} must be a colour string like \"#1b1d23\", not {value!r}")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(f"{what} is not a colour: {value!r}") from None
    return value


def _check_variable(name: str, value: str, variables: dict[str, str]) -> None:
    """Refuse a [variables] value that Textual's CSS would reject when the theme is applied (which used to
    stop the editor). The value is parsed as the CSS does: in a text-style declaration for the *-style
    variables, in a colour declaration for the rest, with the theme's other variables defined."""
    from textual.css.stylesheet import Stylesheet

    kind = "text-style" if name.endswith("-style") or name.endswith("-style-hover") else "color"
    sheet = Stylesheet()
    sheet.set_variables({**variables, "morph-check": value})
    sheet.add_source(f"Screen {{ {kind}: $morph-check; }}", read_from=("theme", name))
    try:
        sheet.parse()
    except Exception:  # noqa: BLE001 - Textual raises several kinds of parse error
        what = "a text style like \"bold\"" if kind == "text-style" else "a colour"
        raise ThemeError(f"variables.{name} is not {what}: {value!r}") from None


def parse_theme(text: str, source: str = "theme.toml") -> MorphTheme:
    """Build a `MorphTheme` from TOML text; raises `ThemeError` (one line, without the file name)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"invalid TOML: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ThemeError(f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    stem = Path(source.removeprefix("builtin:")).stem
    name = data.get("name", stem)
    if not isinstance(name, str) or not name.strip():
        raise ThemeError(f"name must be a non-empty string, not {name!r}")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeError(f"dark must be true or false, not {dark!r}")

    colors = data.get("colors")
    if not isinstance(colors, dict):
        raise ThemeError("a [colors] table with at least primary is required")
    for key in colors:
        if key not in _COLOR_KEYS:
            raise ThemeError(f"colors.{key} is not a theme colour (known: {', '.join(_COLOR_KEYS)})")
    if "primary" not in colors:
        raise ThemeError("colors.primary is required")
    checked = {key: _color(value, f"colors.{key}") for key, value in colors.items()}

    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ThemeError("[variables] must map names to strings")

    extra: dict[str, float] = {}
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ThemeError(f"{key} must be a number from 0 to 1, not {value!r}")
            extra[key] = float(value)

    highlights = data.get("highlights")
    if not isinstance(highlights, list):
        raise ThemeError(f"highlights must be a list of at least {MIN_HIGHLIGHTS} colours")
    palette = [_color(c, f"highlights[{i}]") for i, c in enumerate(highlights)]
    distinct = {Color.parse(c).hex6 for c in palette}
    if len(distinct) < MIN_HIGHLIGHTS:
        raise ThemeError(
            f"highlights needs at least {MIN_HIGHLIGHTS} distinct colours, has {len(distinct)}"
        )

    md = data.get("markdown", {})
    if not isinstance(md, dict):
        raise ThemeError("[markdown] must be a table of style strings")
    markdown = dict(FALLBACK_MARKDOWN)
    for key, value in md.items():
        if key not in STYLE_KEYS:
            raise ThemeError(f"markdown.{key} is not a Markdown style (known: {', '.join(STYLE_KEYS)})")
        if not isinstance(value, str):
            raise ThemeError(f"markdown.{key} must be a style string like \"bold #7aa2f7\", not {value!r}")
        try:
            Style.parse(value)
        except StyleSyntaxError as exc:
            raise ThemeError(f"markdown.{key}: {exc}") from None
        markdown[key] = value

    try:
        theme = Theme(name=name, dark=dark, variables=dict(variables), **checked, **extra)  # type: ignore[arg-type]
        generated = theme.to_color_system().generate()
    except Exception as exc:  # a theme Textual cannot build must not break the editor
        raise ThemeError(f"Textual rejects the theme: {exc}") from None
    for key, value in variables.items():
        _check_variable(key, value, generated)
    return MorphTheme(textual_theme=theme, highlights=palette, markdown=markdown, source=source)


_EMERGENCY_PALETTE = [
    "#ee6969", "#f0b274", "#a89413", "#85d317", "#13ab2c", "#18d7a7",
    "#15a1bd", "#9bc0f4", "#8f87f2", "#d8aef6", "#ec53df", "#f5a7ce",
]


def _emergency_theme() -> MorphTheme:
    """A default theme built in code, so the editor always has `DEFAULT_THEME` even without files."""
    theme = Theme(
        name=DEFAULT_THEME, primary="#7aa2f7", secondary="#bb9af7", accent="#e0af68",
        foreground="#dcdfe4", background="#1b1d23", surface="#22252c", panel="#2c303a",
        success="#9ece6a", warning="#e0af68", error="#f7768e", dark=True,
    )
    return MorphTheme(theme, list(_EMERGENCY_PALETTE), dict(FALLBACK_MARKDOWN), source="builtin:code")


def builtin_themes_dir() -> Path:
    """The built-in theme folder: the installed `morph_themes` package data (wheel or editable
    install), else the source tree's `themes/`."""
    source_tree = Path(__file__).resolve().parents[2] / "themes"
    try:
        spec = importlib.util.find_spec("morph_themes")
    except (ImportError, ValueError):
        spec = None
    # A data-only (namespace) package: its search locations are plain folders; in an editable
    # install there may also be a placeholder entry that is not a folder, which is skipped.
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location)
        if folder.is_dir() and any(folder.glob("*.toml")):
            return folder
    return source_tree


def _theme_files(folder: Path) -> list[Path]:
    try:
        entries = [e for e in folder.iterdir() if e.name.endswith(".toml") and e.is_file()]
    except OSError:
        return []
    return sorted(entries, key=lambda e: e.name)


def _load_folder(
    entries: Iterable[Path], label: str, themes: dict[str, MorphTheme], errors: list[str]
) -> None:
    for entry in entries:
        where = f"builtin:{entry.name}" if label == "builtin" else str(entry)
        try:
            text = entry.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{where}: cannot read the theme: {exc}")
            continue
        try:
            theme = parse_theme(text, where)
        except ThemeError as exc:
            errors.append(f"{where}: {exc}")
            continue
        themes[theme.name] = theme


def load_themes(user_dir: str | os.PathLike[str] | None = None) -> tuple[dict[str, MorphTheme], list[str]]:
    """Built-in themes, then the user's (`user_dir/*.toml`; a user theme may replace a built-in
    one of the same name). Returns (themes by name, one line per file that could not be loaded)."""
    themes: dict[str, MorphTheme] = {}
    errors: list[str] = []
    _load_folder(_theme_files(builtin_themes_dir()), "builtin", themes, errors)
    missing = [n for n in BUILTIN_THEME_NAMES if n not in themes]
    if missing:
        errors.append(f"built-in theme files missing: {', '.join(missing)} (broken install?)")
    if DEFAULT_THEME not in themes:
        themes[DEFAULT_THEME] = _emergency_theme()
    if user_dir is not None:
        folder = Path(user_dir)
        if folder.is_dir():
            _load_folder(_theme_files(folder), "user", themes, errors)
        elif folder.exists():
            errors.append(f"{folder}: the user theme folder is not a folder")
    return themes, errors
